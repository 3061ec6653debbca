/** Shared by the usage-meter tests: fixtures, encoders, seeded chunk splits, and a feeder. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { createUsageMeter, type UsageMeter, type UsageMeterOptions } from '../../src/budget/usage/meter.js';
import type { ModelProvider, UsageResult } from '../../src/budget/usage/types.js';
import { repoRoot } from '../helpers/paths.js';

export const fixture = (name: string): Buffer => readFileSync(path.join(repoRoot, 'fixtures/usage', name));

export type Encoding = 'identity' | 'gzip' | 'br' | 'deflate' | 'deflate-raw';
export const ENCODINGS: Encoding[] = ['identity', 'gzip', 'br', 'deflate', 'deflate-raw'];

export function encode(body: Buffer, enc: Encoding): { body: Buffer; header: string | undefined } {
  switch (enc) {
    case 'identity':
      return { body, header: undefined };
    case 'gzip':
      return { body: gzipSync(body), header: 'gzip' };
    case 'br':
      return { body: brotliCompressSync(body), header: 'br' };
    case 'deflate':
      return { body: deflateSync(body), header: 'deflate' };
    case 'deflate-raw':
      return { body: deflateRawSync(body), header: 'deflate' };
  }
}

/** mulberry32: a small seeded PRNG, so a failing split can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export type Split = 'whole' | 'bytes' | { seed: number; maxChunk: number };

export function* chunks(body: Buffer, split: Split): Generator<Uint8Array> {
  if (split === 'whole') {
    yield body;
    return;
  }
  if (split === 'bytes') {
    for (let i = 0; i < body.length; i++) yield body.subarray(i, i + 1);
    return;
  }
  const rand = prng(split.seed);
  for (let i = 0; i < body.length; ) {
    const n = 1 + Math.floor(rand() * split.maxChunk);
    // Hand out plain Uint8Array views with an offset, as a proxy might.
    yield new Uint8Array(body.buffer, body.byteOffset + i, Math.min(n, body.length - i));
    i += n;
  }
}

/** Pushes every chunk, honouring push()'s backpressure signal, and ends the meter. */
export async function feed(meter: UsageMeter, parts: Iterable<Uint8Array>): Promise<UsageResult> {
  for (const part of parts) {
    if (!meter.push(part)) await meter.drained();
  }
  return meter.end();
}

export async function meterBody(
  provider: ModelProvider,
  body: Buffer,
  options: UsageMeterOptions & { split?: Split } = {},
): Promise<UsageResult> {
  const { split = 'whole', ...meterOptions } = options;
  return feed(createUsageMeter(provider, meterOptions), chunks(body, split));
}

export const SSE = 'text/event-stream; charset=utf-8';
export const JSON_TYPE = 'application/json; charset=UTF-8';
