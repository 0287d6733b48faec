import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { serveSnapshots, type SnapshotsServer } from '../../../src/grpc/server.js';
import { createLogger } from '../../../src/snapshot/logger.js';
import { useSnapshotters } from './fixtures.js';
import { codeOf, snapshotsClient } from './grpc-client.js';

describe('Snapshots gRPC service', () => {
  const { open } = useSnapshotters();
  const servers: SnapshotsServer[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });

  async function start() {
    const { core, root } = await open('sqlite');
    const socket = join(root, 'run', 'lazypull.sock');
    const server = await serveSnapshots(core, socket, createLogger('error', () => undefined));
    servers.push(server);
    const client = snapshotsClient(socket);
    return { client, socket, root, server };
  }

  it('serves on a 0600 socket in a 0700 directory, and removes the socket on close', async () => {
    const { socket, server, client } = await start();
    expect((await stat(socket)).mode & 0o777).toBe(0o600);
    expect((await stat(join(socket, '..'))).mode & 0o777).toBe(0o700);
    client.close();
    await server.close();
    await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('round-trips Prepare, Commit, Stat, Update, Mounts, Usage and Remove over the wire', async () => {
    const { client, root } = await start();
    const prepared = await client.call<{ mounts: { type: string; source: string; options: string[] }[] }>('Prepare', { key: 'a', parent: '', labels: { l: 'v' } });
    expect(prepared.mounts).toEqual([{ type: 'bind', source: join(root, 'snapshots', '1', 'fs'), target: '', options: ['rw', 'rbind'] }]);
    await client.call('Commit', { name: 'base', key: 'a', labels: { c: '1' } });
    const child = await client.call<{ mounts: { type: string; options: string[] }[] }>('Prepare', { key: 'child', parent: 'base' });
    expect(child.mounts[0]?.type).toBe('overlay');
    expect(child.mounts[0]?.options).toContain(`lowerdir=${join(root, 'snapshots', '1', 'fs')}`);
    const statted = await client.call<{ info: { name: string; kind: string; parent: string; labels: Record<string, string>; created_at: { seconds: number } } }>('Stat', { key: 'child' });
    expect(statted.info).toMatchObject({ name: 'child', kind: 'ACTIVE', parent: 'base', labels: {} });
    expect(Math.abs(statted.info.created_at.seconds - Date.now() / 1000)).toBeLessThan(60);
    const updated = await client.call<{ info: { labels: Record<string, string> } }>('Update', { info: { name: 'base', labels: { x: 'y' } }, update_mask: { paths: ['labels.x'] } });
    expect(updated.info.labels).toEqual({ c: '1', x: 'y' });
    expect((await client.call<{ info: { kind: string } }>('Stat', { key: 'base' })).info.kind).toBe('COMMITTED');
    const usage = await client.call<{ size: number; inodes: number }>('Usage', { key: 'child' });
    expect(usage.inodes).toBe(1);
    await client.call('Remove', { key: 'child' });
    expect(await codeOf(client.call('Stat', { key: 'child' }))).toBe(grpc.status.NOT_FOUND);
    await client.call('Cleanup', {});
    client.close();
  });

  it('streams List in batches with filters', async () => {
    const { client } = await start();
    for (let i = 0; i < 150; i++) await client.call('View', { key: `v${String(i).padStart(3, '0')}`, parent: '', labels: { even: String(i % 2 === 0) } });
    const all = await client.list([]);
    expect(all.names).toHaveLength(150);
    expect(all.batches).toBe(2);
    const even = await client.list(['labels.even==true']);
    expect(even.names).toHaveLength(75);
    expect(even.names[1]).toBe('v002');
    client.close();
  });

  it('answers bad requests with gRPC errors and keeps serving', async () => {
    const { client } = await start();
    await client.call('Prepare', { key: 'a', parent: '' });
    await client.call('Commit', { name: 'base', key: 'a' });
    await client.call('Prepare', { key: 'child', parent: 'base' });
    expect(await codeOf(client.call('Stat', { key: 'no-such-key' }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(client.call('Mounts', { key: 'no-such-key' }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(client.call('Prepare', { key: 'x', parent: 'no-such-parent' }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(client.call('Prepare', { key: 'a2', parent: 'child' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(client.call('Prepare', { key: 'child', parent: '' }))).toBe(grpc.status.ALREADY_EXISTS);
    expect(await codeOf(client.call('Prepare', { key: '', parent: '' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(client.call('Prepare', { key: 'g', parent: '', labels: { ['\u0000'.repeat(10)]: 'x'.repeat(5000) } }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(client.call('Remove', { key: 'base' }))).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await codeOf(client.call('Commit', { name: 'base', key: 'child' }))).toBe(grpc.status.ALREADY_EXISTS);
    expect(await codeOf(client.call('Update', { info: { name: 'base' }, update_mask: { paths: ['kind'] } }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(client.call('Update', {}))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(client.list(['labels.=="']))).toBe(grpc.status.INVALID_ARGUMENT);
    // Still serving, and nothing changed.
    expect((await client.list([])).names).toEqual(['base', 'child']);
    client.close();
  });
});
