import { describe, expect, it } from 'vitest';
import { WriteHold } from '../../../src/cache/write-hold.js';

/** Whether the promise settled within a few turns of the event loop. */
async function settledSoon(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('WriteHold', () => {
  it('lets writes through at once when nothing holds them', async () => {
    expect(await settledSoon(new WriteHold(1000).whenWritable(10))).toBe(true);
  });

  it('keeps writes waiting until the last of several holds is released, and a release counts once', async () => {
    const hold = new WriteHold(1000);
    const first = hold.hold(60_000);
    const second = hold.hold(60_000);
    const write = hold.whenWritable(10);
    first();
    first();
    expect(hold.held).toBe(true);
    expect(await settledSoon(write)).toBe(false);
    second();
    expect(hold.held).toBe(false);
    expect(await settledSoon(write)).toBe(true);
  });

  it('lets writes through once the bytes held back would pass the budget', async () => {
    const hold = new WriteHold(100);
    hold.hold(60_000);
    const within = hold.whenWritable(60);
    const over = hold.whenWritable(60);
    expect(await settledSoon(over)).toBe(true);
    expect(await settledSoon(within)).toBe(false);
  });

  it('ends a hold after its time limit, and releaseAll ends every hold', async () => {
    const timed = new WriteHold(1000);
    timed.hold(20);
    const write = timed.whenWritable(10);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await settledSoon(write)).toBe(true);

    const all = new WriteHold(1000);
    all.hold(60_000);
    all.hold(60_000);
    const waiting = all.whenWritable(10);
    all.releaseAll();
    expect(all.held).toBe(false);
    expect(await settledSoon(waiting)).toBe(true);
  });
});
