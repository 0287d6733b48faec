/**
 * Worker options for Piscina pools whose worker file is an ES module. Piscina first tries `require()`
 * on the file, which on Node 20.19+ loads ES modules synchronously (require(esm)); that path can abort
 * the whole process ("v8::Module::IsGraphAsync must be used on an instantiated module", seen once in a
 * full test run) when the same module is also being imported. With require(esm) off in the workers,
 * the require fails at once and Piscina uses `import()`, the path that works on every Node 20.
 */
export function esmWorkerExecArgv(): { execArgv?: string[] } {
  return process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module') ? { execArgv: ['--no-experimental-require-module'] } : {};
}
