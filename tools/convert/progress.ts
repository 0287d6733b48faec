import { MultiBar, Presets, type SingleBar } from 'cli-progress';

/** What the converter reports while it works; one id per source layer. */
export interface ConvertProgress {
  layerStarted(id: string, inputBytes: number): void;
  /** Cumulative compressed bytes read and bytes written so far. */
  layerBytes(id: string, bytesIn: number, bytesOut: number): void;
  layerFinished(id: string, summary: string): void;
  note(line: string): void;
  stop(): void;
}

export const silentProgress: ConvertProgress = { layerStarted() {}, layerBytes() {}, layerFinished() {}, note() {}, stop() {} };

const MiB = 1 << 20;
const shortDigest = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

/** A bar per layer (bytes in of the source blob, bytes out, rate) on a terminal; plain lines otherwise. */
export function terminalProgress(stream: NodeJS.WriteStream): ConvertProgress {
  return stream.isTTY ? new BarProgress(stream) : new LineProgress(stream);
}

class BarProgress implements ConvertProgress {
  private readonly bars = new Map<string, { bar: SingleBar; started: number }>();
  private readonly multibar: MultiBar;

  constructor(stream: NodeJS.WriteStream) {
    this.multibar = new MultiBar(
      { stream, hideCursor: true, clearOnComplete: false, autopadding: true, format: '{layer} [{bar}] {percentage}% | in {in} | out {out} | {rate} | {state}' },
      Presets.shades_classic,
    );
  }

  layerStarted(id: string, inputBytes: number): void {
    const bar = this.multibar.create(Math.max(1, inputBytes), 0, { layer: shortDigest(id), in: mib(0), out: mib(0), rate: '-', state: 'converting' });
    this.bars.set(id, { bar, started: Date.now() });
  }

  layerBytes(id: string, bytesIn: number, bytesOut: number): void {
    const entry = this.bars.get(id);
    if (!entry) return;
    const seconds = Math.max(0.001, (Date.now() - entry.started) / 1000);
    entry.bar.update(bytesIn, { in: mib(bytesIn), out: mib(bytesOut), rate: `${(bytesIn / MiB / seconds).toFixed(1)} MiB/s` });
  }

  layerFinished(id: string, summary: string): void {
    const entry = this.bars.get(id);
    if (!entry) return this.note(`${shortDigest(id)}: ${summary}`);
    entry.bar.update(entry.bar.getTotal(), { state: summary });
  }

  note(line: string): void {
    this.multibar.log(`${line}\n`);
  }

  stop(): void {
    this.multibar.stop();
  }
}

class LineProgress implements ConvertProgress {
  private readonly started = new Map<string, number>();

  constructor(private readonly stream: NodeJS.WriteStream) {}

  layerStarted(id: string, inputBytes: number): void {
    this.started.set(id, Date.now());
    this.note(`layer ${shortDigest(id)}: converting ${mib(inputBytes)}`);
  }

  layerBytes(): void {}

  layerFinished(id: string, summary: string): void {
    const started = this.started.get(id);
    const took = started === undefined ? '' : ` in ${((Date.now() - started) / 1000).toFixed(1)} s`;
    this.note(`layer ${shortDigest(id)}: ${summary}${took}`);
  }

  note(line: string): void {
    this.stream.write(`${line}\n`);
  }

  stop(): void {}
}
