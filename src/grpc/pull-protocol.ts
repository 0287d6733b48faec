/**
 * lazypull.v1.Pull on the daemon socket: `lazypull rpull` asks the running daemon to do the pull, so
 * the daemon learns the image's layers the moment the manifest is in and opens their TOCs before
 * containerd's first Prepare, and the command needs neither gRPC's library nor the registry client.
 *
 * The messages travel as JSON (gRPC's `application/grpc+json`), not protobuf: both ends are lazypull,
 * and the command then talks plain HTTP/2 with Node's own module, starting in 0.13 s instead of 0.27.
 * This module holds the contract both ends share and imports nothing.
 */

export const PULL_METHOD_PATH = '/lazypull.v1.Pull/Pull';
export const GRPC_JSON_CONTENT_TYPE = 'application/grpc+json';

export interface PullRequest {
  reference: string;
  /** containerd's socket the daemon is to pull into. */
  containerd_address: string;
  namespace: string;
  snapshotter: string;
  /** `os/arch[/variant]`; empty: the daemon host's platform. */
  platform?: string;
  /** Plain HTTP to the registry for this pull (the daemon's hosts.toml otherwise decides). */
  plain_http?: boolean;
}

/** What a layer became, as in containerd/pull.ts's LayerOutcome. */
export type WireLayerOutcome = { kind: 'present' } | { kind: 'lazy' } | { kind: 'fetched'; bytes: number; reason: string };

export interface WireDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface WireResolved {
  name: string;
  pinned: string;
  target: WireDescriptor;
  manifest: WireDescriptor;
  layers: WireDescriptor[];
  imageBytes: number;
}

export interface WirePullResult extends WireResolved {
  chainId: string;
  layerResults: { descriptor: WireDescriptor; chainId: string; outcome: WireLayerOutcome }[];
  downloadedBytes: number;
  image: 'created' | 'updated';
}

/** One message of the response stream; the last is `done` or `failed`. */
export type PullEvent =
  | { resolved: WireResolved }
  | { layer_started: { index: number } }
  | { layer_bytes: { index: number; bytes: number } }
  | { layer_applying: { index: number } }
  | { layer_done: { index: number; outcome: WireLayerOutcome } }
  | { done: WirePullResult }
  | { failed: { message: string } };

/** A gRPC message frame: a compression flag (0), the length (big-endian), the bytes. */
export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.alloc(5);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

/** Splits gRPC message frames off the front of `buffered`; returns the messages and what is left. */
export function decodeFrames(buffered: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let at = 0;
  while (buffered.length - at >= 5) {
    if (buffered[at] !== 0) throw new Error('the daemon sent a compressed gRPC message, which this client does not read');
    const length = buffered.readUInt32BE(at + 1);
    if (buffered.length - at - 5 < length) break;
    messages.push(buffered.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return { messages, rest: buffered.subarray(at) };
}
