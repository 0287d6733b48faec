import type { Command } from 'commander';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { openLayer, type OpenedLayer } from '../../estargz/open.js';
import { FileSource } from '../../io/random-access.js';
import { readFileChunks } from '../../layer/read.js';
import { isDigest, type Digest } from '../../util/digest.js';

interface LayerOptions {
  verify: boolean;
  tocDigest?: string;
}

function addLayerOptions(cmd: Command): Command {
  return cmd
    .option('--no-verify', 'read without chunk verification (needed for legacy stargz)')
    .option('--toc-digest <digest>', 'fail unless the TOC has this digest (the toc.digest annotation)');
}

async function withLayer<T>(blob: string, options: LayerOptions, use: (layer: OpenedLayer, source: FileSource) => Promise<T>): Promise<T> {
  if (options.tocDigest !== undefined && !isDigest(options.tocDigest)) throw new Error(`--toc-digest ${JSON.stringify(options.tocDigest)} is not a sha256 digest`);
  const source = await FileSource.open(blob);
  try {
    const layer = await openLayer(source, { verify: options.verify, expectedTocDigest: options.tocDigest as Digest | undefined });
    return await use(layer, source);
  } finally {
    await source.close();
  }
}

/** `toc`, `toc-digest` and `cat`: look inside a local eStargz / zstd:chunked blob. */
export function registerLayerCommands(program: Command): void {
  addLayerOptions(program.command('toc').description("print a layer blob's TOC JSON").argument('<blob>', 'eStargz or zstd:chunked blob file'))
    .action(async (blob: string, options: LayerOptions) => {
      await withLayer(blob, options, async (layer) => void process.stdout.write(layer.tocJson));
    });

  addLayerOptions(program.command('toc-digest').description("print the sha256 digest of a layer blob's TOC").argument('<blob>', 'eStargz or zstd:chunked blob file'))
    .action(async (blob: string, options: LayerOptions) => {
      await withLayer(blob, options, async (layer) => void process.stdout.write(`${layer.tocDigest}\n`));
    });

  addLayerOptions(program.command('cat').description("write a file's verified content to stdout").argument('<blob>', 'eStargz or zstd:chunked blob file').argument('<path>', 'path inside the layer'))
    .action(async (blob: string, path: string, options: LayerOptions) => {
      await withLayer(blob, options, async (layer, source) => {
        const entry = layer.lookup(path);
        if (!entry) throw new Error(`${path}: no such file in the layer`);
        if (entry.type !== 'reg') throw new Error(`${path}: not a regular file (${entry.type})`);
        await pipeline(Readable.from(readFileChunks(layer, source, entry)), process.stdout, { end: false });
      });
    });
}
