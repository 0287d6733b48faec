/**
 * Why a layer was pulled normally instead of lazily, as the fallback counter labels it. The daemon
 * classifies failures into these (src/daemon/fallback.ts); metrics keeps its own copy of the list so it
 * can create every series at zero, and TypeScript checks that the two unions agree where they meet.
 */
export const FALLBACK_CATEGORIES = ['no-remote-labels', 'not-lazy-format', 'no-toc-digest', 'toc-invalid', 'registry-unreachable', 'auth', 'timeout', 'other'] as const;

export type FallbackCategory = (typeof FALLBACK_CATEGORIES)[number];
