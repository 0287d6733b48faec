import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TypeFlag, paddingFor, tarFileEntry, ustarHeader, TAR_EOF } from '../../../src/tar/header.js';
import { TarFormatError, TarReader, type TarHeader } from '../../../src/tar/reader.js';

const dir = mkdtempSync(join(tmpdir(), 'lazypull-tar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(tar: Buffer): Promise<{ header: TarHeader; payload: string; raw: Buffer }[]> {
  const reader = new TarReader([tar]);
  const out = [];
  for (let e = await reader.next(); e; e = await reader.next()) {
    out.push({ header: e.header, payload: (await reader.readPayload(1 << 20)).toString(), raw: e.rawHeader });
  }
  return out;
}

const longName = `${'d'.repeat(60)}/${'f'.repeat(70)}-ünï.txt`;

function makeTar(format: 'gnu' | 'pax'): Buffer {
  const file = join(dir, `${format}-${longName.split('/')[1]}`);
  writeFileSync(file, 'content');
  chownSync(file, 3_000_000, 70_000);
  execFileSync('tar', ['-C', dir, `--format=${format}`, '--transform', `s|.*|${longName}|`, '-cf', join(dir, `${format}.tar`), file.slice(dir.length + 1)]);
  return execFileSync('cat', [join(dir, `${format}.tar`)]);
}

describe('tar reader', () => {
  it.each(['gnu', 'pax'] as const)('reads %s long names, large ids and payloads', async (format) => {
    const [entry, ...rest] = await readAll(makeTar(format));
    expect(rest).toEqual([]);
    expect(entry!.header).toMatchObject({ name: longName, kind: 'reg', uid: 3_000_000, gid: 70_000, size: 7 });
    expect(entry!.payload).toBe('content');
    expect(entry!.raw.length).toBeGreaterThan(512); // the extension header travels with the entry
  });

  it('keeps nanosecond PAX mtimes and SCHILY xattrs as bytes', async () => {
    const file = join(dir, 'x');
    writeFileSync(file, '');
    execFileSync('touch', ['-d', '2020-01-02 03:04:05.123456789 UTC', file]);
    execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff10', file]);
    const tar = execFileSync('tar', ['-C', dir, '--format=pax', '--xattrs', '--xattrs-include=*', '-cf', '-', 'x']);
    const [entry] = await readAll(tar);
    expect(entry!.header.mtimeSec).toBe(Date.UTC(2020, 0, 2, 3, 4, 5) / 1000);
    expect(entry!.header.mtimeNsec).toBe(123456789);
    expect([...entry!.header.xattrs.get('user.bin')!]).toEqual([0, 0xff, 0x10]);
  });

  it('applies global PAX headers to the entries after them', async () => {
    const records = '17 uname=globalu\n';
    const global = Buffer.concat([ustarHeader({ name: 'pax_global_header', size: records.length, mode: 0o644, typeflag: TypeFlag.PaxGlobal }), Buffer.from(records), Buffer.alloc(paddingFor(records.length))]);
    const entries = await readAll(Buffer.concat([global, tarFileEntry('a', Buffer.from('1')), tarFileEntry('b', Buffer.from('2')), TAR_EOF]));
    expect(entries.map((e) => [e.header.name, e.header.userName, e.payload])).toEqual([['a', 'globalu', '1'], ['b', 'globalu', '2']]);
  });

  it('rejects bad checksums, unsupported types and truncation with the entry named', async () => {
    const good = Buffer.concat([tarFileEntry('first', Buffer.from('x')), tarFileEntry('second', Buffer.from('y')), TAR_EOF]);
    const corrupt = Buffer.from(good);
    corrupt.writeUInt8(corrupt.readUInt8(1024 + 3) ^ 1, 1024 + 3);
    await expect(readAll(corrupt)).rejects.toThrow(/bad tar header checksum at offset 1024 \(after first\)/);
    const sparse = ustarHeader({ name: 'holes', size: 0, mode: 0o644, typeflag: 0x53 as TypeFlag });
    await expect(readAll(Buffer.concat([sparse, TAR_EOF]))).rejects.toThrow(TarFormatError);
    await expect(readAll(Buffer.concat([sparse, TAR_EOF]))).rejects.toThrow(/unsupported tar entry type "S" for "holes"/);
    await expect(readAll(good.subarray(0, 512 + 100))).rejects.toThrow(/the (payload|padding) of "first"/);
  });
});
