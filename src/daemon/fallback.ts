/**
 * Why a layer is pulled normally instead of lazily, in words a user can act on and in one of a few
 * categories a metric can count. The peers' silent fallback is their users' first complaint.
 */
import { FooterError } from '../estargz/footer.js';
import { TocError } from '../estargz/open.js';
import { TocValidationError } from '../estargz/toc-index.js';
import { AuthError, DeadlineExceededError, HttpStatusError, ManifestError, RegistryError, RequestTimeoutError, isAbortError } from '../remote/index.js';
import { SociIndexError } from '../soci/index-manifest.js';
import { ZtocError } from '../soci/ztoc.js';
import { LabelError } from './layer-labels.js';

import type { FallbackCategory } from '../metrics/index.js';

export type { FallbackCategory };

export interface Fallback {
  category: FallbackCategory;
  reason: string;
}

/** A resolution that ran out of time (the resolver's own deadline, not a registry timeout). */
export class ResolveTimeoutError extends Error {
  override name = 'ResolveTimeoutError';
}

/** No TOC digest to verify against while verification is required. */
export class MissingTocDigestError extends Error {
  override name = 'MissingTocDigestError';
}

/** A layer that no index format can serve (e.g. plain gzip without a SOCI index). */
export class NotLazyFormatError extends Error {
  override name = 'NotLazyFormatError';
}

/** Maps what went wrong while resolving a layer to its fallback category and a reason to show. */
export function classifyFailure(err: unknown): Fallback {
  const message = err instanceof Error ? err.message : String(err);
  return { category: categoryOf(err), reason: message };
}

function categoryOf(err: unknown): FallbackCategory {
  if (err instanceof LabelError) return 'no-remote-labels';
  if (err instanceof MissingTocDigestError) return 'no-toc-digest';
  if (err instanceof NotLazyFormatError || err instanceof FooterError) return 'not-lazy-format';
  if (err instanceof TocError && /external TOC|legacy stargz/.test(err.message)) return 'not-lazy-format';
  if (err instanceof TocError || err instanceof TocValidationError || err instanceof ZtocError || err instanceof SociIndexError) return 'toc-invalid';
  if (err instanceof ResolveTimeoutError || err instanceof RequestTimeoutError || err instanceof DeadlineExceededError || isAbortError(err)) return 'timeout';
  if (err instanceof AuthError || (err instanceof HttpStatusError && (err.status === 401 || err.status === 403))) return 'auth';
  // 404 and other client errors, invalid manifests: the registry answered, it just has no such layer or index.
  if ((err instanceof HttpStatusError && err.status < 500) || err instanceof ManifestError) return 'other';
  if (err instanceof RegistryError) return 'registry-unreachable';
  return 'other';
}
