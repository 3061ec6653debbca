/**
 * Response framing for the meter: which parser a Content-Type needs, and a streaming
 * decompressor for a Content-Encoding. Decompression uses node:zlib's stream objects so a
 * long streamed body is inflated as it arrives, never re-inflated from the start.
 */
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import type { Transform } from 'node:stream';

export type BodyFraming = 'json' | 'sse';
export type BodyEncoding = 'gzip' | 'deflate' | 'br';

/**
 * `text/event-stream` is parsed as SSE; JSON media types (and a missing header, which model APIs
 * never send on success) are buffered as JSON. Anything else carries no usage we can read.
 */
export function bodyFraming(contentType: string | undefined): BodyFraming | { unsupported: string } {
  if (contentType === undefined || contentType.trim() === '') return 'json';
  const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (media === 'text/event-stream') return 'sse';
  if (media === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(media)) return 'json';
  return { unsupported: media };
}

/**
 * The one encoding to undo, undefined for none/identity, or `{ unsupported }`. A stacked list
 * (`gzip, br`) is refused: no model API sends one, and decoding chains is not worth the risk.
 */
export function bodyEncoding(contentEncoding: string | undefined): BodyEncoding | undefined | { unsupported: string } {
  if (contentEncoding === undefined) return undefined;
  const codings = contentEncoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return undefined;
  if (codings.length > 1) return { unsupported: codings.join(', ') };
  const coding = codings[0]!;
  if (coding === 'gzip' || coding === 'x-gzip') return 'gzip';
  if (coding === 'deflate' || coding === 'br') return coding;
  return { unsupported: coding };
}

/**
 * A decompressor for `encoding`. `firstByte` is needed for deflate only: HTTP "deflate" is meant
 * to be zlib-wrapped (RFC 9110 8.4.1.2) but some servers send raw deflate; like undici's fetch,
 * a first byte whose low nibble is 8 (the zlib CM field) selects the zlib wrapper.
 */
export function createBodyDecoder(encoding: BodyEncoding, firstByte: number): Transform {
  switch (encoding) {
    case 'gzip':
      return createGunzip();
    case 'br':
      return createBrotliDecompress();
    case 'deflate':
      return (firstByte & 0x0f) === 0x08 ? createInflate() : createInflateRaw();
  }
}
