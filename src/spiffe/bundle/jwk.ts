/**
 * JWK <-> node:crypto KeyObject for bundle authorities. Only public keys are accepted:
 * a bundle that carries private or symmetric key material is refused outright.
 */
import { createPublicKey, KeyObject } from 'node:crypto';
import { parseStrictJson } from '../../lib/strict-json.js';

/** Members that only private / symmetric JWKs have. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** The public-key members node:crypto needs, per kty. */
const PUBLIC_MEMBERS = new Map<string, readonly string[]>([
  ['EC', ['crv', 'x', 'y']],
  ['RSA', ['n', 'e']],
  ['OKP', ['crv', 'x']],
]);

export type JsonObject = Record<string, unknown>;

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Public KeyObject from a JWK; throws Error with a plain reason (callers add context). */
export function jwkToPublicKey(jwk: JsonObject): KeyObject {
  const kty = jwk['kty'];
  if (typeof kty !== 'string') throw new Error('missing "kty"');
  const members = PUBLIC_MEMBERS.get(kty);
  if (!members) throw new Error(`unsupported key type "${kty}"`);
  for (const m of PRIVATE_MEMBERS) {
    if (Object.hasOwn(jwk, m)) throw new Error('contains private key material');
  }
  const pub: Record<string, string> = { kty };
  for (const m of members) {
    const v = jwk[m];
    if (typeof v !== 'string' || v === '') throw new Error(`missing or invalid "${m}"`);
    pub[m] = v;
  }
  try {
    return createPublicKey({ key: pub, format: 'jwk' });
  } catch (err) {
    throw new Error(`invalid ${kty} key: ${(err as Error).message}`);
  }
}

/** Public JWK members of a key (kty, crv/x/y or n/e). */
export function publicKeyToJwk(key: KeyObject): JsonObject {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return pub.export({ format: 'jwk' }) as JsonObject;
}

export function keysEqual(a: ReadonlyMap<string, KeyObject>, b: ReadonlyMap<string, KeyObject>): boolean {
  if (a.size !== b.size) return false;
  for (const [kid, key] of a) {
    const other = b.get(kid);
    if (!other || !key.equals(other)) return false;
  }
  return true;
}

/** Parse JSON text or UTF-8 bytes; throws Error with the parser's message. Duplicate members are refused. */
export function parseJsonText(json: string | Uint8Array): unknown {
  const text = typeof json === 'string' ? json : Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8');
  return parseStrictJson(text);
}
