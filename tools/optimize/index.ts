/** The prefetch profiler: `lazypull optimize` is a thin shell over this. */
export { optimizeImage, describeRun, patternMatches, type OptimizeOptions, type OptimizeResult, type ReadProfile } from './optimize-image.js';
export { AccessLog, addRange, attributeToLayers, type AccessedPath, type ByteRanges } from './access-log.js';
export { formatAccessList, parseAccessList } from './access-list.js';
export { globToRegExp, isGlob, parsePattern, type PathPattern } from './glob.js';
export { imageRunConfig, mergeEnv, parseArgvJson, resolveUser, runtimeSpec, workloadProcess, DEFAULT_PATH, type ImageRunConfig, type WorkloadOverrides, type WorkloadProcess } from './runtime-spec.js';
export { runWorkload, type WorkloadRun, type WorkloadOptions } from './container.js';
