export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const NODE_ARCH_TO_OCI: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  const architecture = NODE_ARCH_TO_OCI[process.arch] ?? process.arch;
  return { os: process.platform === 'win32' ? 'windows' : process.platform, architecture, ...(architecture === 'arm' ? { variant: 'v7' } : {}) };
}

/** `os/arch[/variant]`, e.g. `linux/arm64/v8`. */
export function parsePlatform(spec: string): Platform {
  const parts = spec.split('/');
  const [os, architecture, variant] = parts;
  if (parts.length < 2 || parts.length > 3 || !os || !architecture || (parts.length === 3 && !variant)) {
    throw new Error(`invalid platform ${JSON.stringify(spec)}: expected os/architecture[/variant]`);
  }
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** arm64 images usually omit the variant (v8); equal after normalization means a match. */
function normalizedVariant(platform: Platform): string | undefined {
  if (platform.architecture === 'arm64' && (platform.variant === undefined || platform.variant === 'v8')) return 'v8';
  return platform.variant;
}

/**
 * Whether an image built for `candidate` runs on `wanted`. A wanted platform without variant accepts
 * any variant; a wanted variant must match exactly.
 */
export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  if (wanted.os !== candidate.os || wanted.architecture !== candidate.architecture) return false;
  if (wanted.variant === undefined) return true;
  return normalizedVariant(wanted) === normalizedVariant(candidate);
}
