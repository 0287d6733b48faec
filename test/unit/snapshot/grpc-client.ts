import * as grpc from '@grpc/grpc-js';
import { loadSnapshotsService } from '../../../src/grpc/protos.js';

type Callback = (err: grpc.ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, callback: Callback) => void;

/** A Snapshots client over the real wire format, with promise-returning calls. */
export function snapshotsClient(socket: string) {
  const { Client } = loadSnapshotsService();
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object): Promise<T> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, UnaryMethod>)[method] as UnaryMethod;
      fn.call(client, request, (err, response) => (err ? reject(err) : resolve(response as T)));
    });
  const list = (filters: string[]): Promise<{ batches: number; names: string[] }> =>
    new Promise((resolve, reject) => {
      const stream = (client as unknown as { List: (r: object) => grpc.ClientReadableStream<{ info: { name: string }[] }> }).List({ snapshotter: 'lazypull', filters });
      const result = { batches: 0, names: [] as string[] };
      stream.on('data', (message: { info: { name: string }[] }) => {
        result.batches += 1;
        result.names.push(...message.info.map((i) => i.name));
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(result));
    });
  return { call, list, close: () => client.close() };
}

/** The gRPC status code a call failed with (-1 when it succeeded). */
export async function codeOf(promise: Promise<unknown>): Promise<number> {
  return promise.then(
    () => -1,
    (err: grpc.ServiceError) => err.code,
  );
}
