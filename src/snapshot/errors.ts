/**
 * Errors of the snapshotter core. Each carries the containerd error class it maps to, so the gRPC layer
 * can answer with the status code containerd's proxy client turns back into errdefs (NotFound,
 * AlreadyExists, ...): containerd branches on those classes, e.g. AlreadyExists from Prepare means
 * "the remote layer is already there".
 */
export type SnapshotErrorCode = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'Unavailable' | 'Internal';

export class SnapshotError extends Error {
  override name = 'SnapshotError';
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (message: string): SnapshotError => new SnapshotError('NotFound', message);
export const alreadyExists = (message: string): SnapshotError => new SnapshotError('AlreadyExists', message);
export const failedPrecondition = (message: string): SnapshotError => new SnapshotError('FailedPrecondition', message);
export const invalidArgument = (message: string): SnapshotError => new SnapshotError('InvalidArgument', message);
export const unavailable = (message: string): SnapshotError => new SnapshotError('Unavailable', message);

export function isSnapshotError(err: unknown, code?: SnapshotErrorCode): err is SnapshotError {
  return err instanceof SnapshotError && (code === undefined || err.code === code);
}
