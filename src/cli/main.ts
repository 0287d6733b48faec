import { Command, CommanderError } from 'commander';
import { registerLayerCommands } from './commands/layer.js';
import { registerConvertLayer } from './commands/convert-layer.js';
import { registerInspect } from './commands/inspect.js';
import { registerServe } from './commands/serve.js';
import { registerConvert } from './commands/convert.js';
import { registerOptimize } from './commands/optimize.js';
import { registerSoci } from './commands/soci.js';
import { registerRpull } from './commands/rpull.js';
import { registerStatus } from './commands/status.js';

/** The `lazypull` command: a thin shell over the libraries; each command lives in ./commands. */
export function buildProgram(): Command {
  const program = new Command('lazypull')
    .description('Lazy-pulling containerd snapshotter and image converter (eStargz, zstd:chunked, SOCI)')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerLayerCommands(program);
  registerConvertLayer(program);
  registerInspect(program);
  registerServe(program);
  registerConvert(program);
  registerOptimize(program);
  registerSoci(program);
  registerRpull(program);
  registerStatus(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`lazypull: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
