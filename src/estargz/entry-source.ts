import { TypeFlag, paddingFor, ustarHeader } from '../tar/header.js';
import { TarReader, type TarHeader } from '../tar/reader.js';
import { LANDMARK_CONTENTS, type NO_PREFETCH_LANDMARK, type PREFETCH_LANDMARK } from './toc.js';

/** One input tar entry as the writer consumes it: metadata, the original header bytes, the payload. */
export interface SourceEntry {
  header: TarHeader;
  rawHeader: Buffer;
  /** Up to `max` payload bytes; empty when the payload is done. */
  readPayload(max: number): Promise<Buffer>;
  /** The tar padding after the payload (call once the payload is read). */
  readPadding(): Promise<Buffer>;
}

/** Entries straight from a tar stream, in archive order. */
export async function* streamEntries(reader: TarReader): AsyncGenerator<SourceEntry> {
  for (let entry = await reader.next(); entry; entry = await reader.next()) {
    yield {
      header: entry.header,
      rawHeader: entry.rawHeader,
      readPayload: (max) => reader.readPayload(max),
      readPadding: () => reader.readPadding(),
    };
  }
  await reader.drain();
}

/** The landmark file lazypull (like the reference) puts after the prioritized files, or first when there are none. */
export function landmarkEntry(name: typeof PREFETCH_LANDMARK | typeof NO_PREFETCH_LANDMARK): SourceEntry {
  const payload = Buffer.from([LANDMARK_CONTENTS]);
  let sent = false;
  return {
    header: { name, linkName: '', kind: 'reg', mode: 0o644, uid: 0, gid: 0, userName: '', groupName: '', size: 1, mtimeSec: 0, mtimeNsec: 0, devMajor: 0, devMinor: 0, xattrs: new Map() },
    rawHeader: ustarHeader({ name, size: 1, mode: 0o644, typeflag: TypeFlag.Reg }),
    readPayload: async () => (sent ? Buffer.alloc(0) : ((sent = true), payload)),
    readPadding: async () => Buffer.alloc(paddingFor(1)),
  };
}

