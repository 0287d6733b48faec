import { parseContentRange, type ContentRange } from './content-range.js';

export interface MultipartPart {
  range: ContentRange;
  data: Buffer;
}

export class MalformedMultipartError extends Error {
  override name = 'MalformedMultipartError';
}

/** The boundary of a `multipart/byteranges` Content-Type; undefined for other types. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/byteranges\s*;/i.test(contentType)) return undefined;
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return match?.[1] ?? match?.[2];
}

const CRLF = Buffer.from('\r\n');

/**
 * Parses a `multipart/byteranges` body (RFC 9110 14.6). Each part's length comes from its
 * Content-Range, not from searching for the boundary, because the boundary string may occur inside
 * binary data. Anything unexpected throws MalformedMultipartError: callers fall back to single ranges.
 */
export function parseMultipartByteranges(body: Buffer, boundary: string): MultipartPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let position = body.indexOf(delimiter);
  if (position < 0) throw new MalformedMultipartError('no boundary in body');
  for (;;) {
    position += delimiter.length;
    if (body.subarray(position, position + 2).toString('latin1') === '--') return finish(parts);
    const lineEnd = body.indexOf(CRLF, position);
    if (lineEnd < 0 || body.subarray(position, lineEnd).toString('latin1').trim() !== '') throw new MalformedMultipartError('garbage after boundary');
    position = lineEnd + 2;
    const headersEnd = body.indexOf('\r\n\r\n', position - 2);
    if (headersEnd < 0) throw new MalformedMultipartError('part headers not terminated');
    const headerLines = headersEnd >= position ? body.subarray(position, headersEnd).toString('latin1').split('\r\n') : [];
    let range: ContentRange | undefined;
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'content-range') range = parseContentRange(line.slice(colon + 1));
    }
    if (!range) throw new MalformedMultipartError('part without a valid Content-Range');
    const dataStart = headersEnd + 4;
    const dataEnd = dataStart + (range.end - range.start + 1);
    if (dataEnd > body.length) throw new MalformedMultipartError('part shorter than its Content-Range');
    parts.push({ range, data: body.subarray(dataStart, dataEnd) });
    if (!body.subarray(dataEnd, dataEnd + 2).equals(CRLF) || !body.subarray(dataEnd + 2, dataEnd + 2 + delimiter.length).equals(delimiter)) {
      throw new MalformedMultipartError('part not followed by the boundary');
    }
    position = dataEnd + 2;
  }
}

function finish(parts: MultipartPart[]): MultipartPart[] {
  if (parts.length === 0) throw new MalformedMultipartError('no parts');
  return parts;
}
