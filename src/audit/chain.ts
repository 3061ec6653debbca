/**
 * The hash chain's wire format, shared by the writer, the restart logic and the verifier.
 *
 * A chained audit line is `{"time":ISO,"seq":N,"prev":HEX,"log":"audit","sidecar":NAME,
 * "chain":ID,...}`: `prev` is the SHA-256 (hex) of the previous audit line's exact bytes without
 * its trailing newline. A chain starts with its genesis record (seq 0, type audit_chain_start,
 * prev 64 zeros, or the hash of the unchained line it follows); records count from 1. `chain`
 * names the chain (random per chain, kept when a sidecar resumes its file), so a verifier can
 * tell apart several sidecars (or restarts) interleaved on one stream.
 */
import { hash, randomBytes } from 'node:crypto';

export const ZERO_HASH = '0'.repeat(64);

const HEX64 = /^[0-9a-f]{64}$/;
const AUDIT_MARKER = Buffer.from('"log":"audit"');

/** SHA-256 of one line's bytes (no newline; a string is hashed as UTF-8), as lowercase hex. */
export function lineHash(line: Uint8Array | string): string {
  return hash('sha256', line, 'hex');
}

export function isChainHash(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value);
}

export type AuditLine =
  | { kind: 'empty' }
  /** Not JSON; `looksAudit` when the bytes still carry the audit marker (a damaged audit line). */
  | { kind: 'invalid_json'; looksAudit: boolean; detail: string }
  /** Valid JSON but not an audit line (e.g. a pino log line on a shared stdout). */
  | { kind: 'other' }
  /** An audit line from before hash chaining (no seq/prev). */
  | { kind: 'unchained' }
  /** An audit line whose seq/prev are present but not valid. */
  | { kind: 'bad_chain_fields'; detail: string }
  | { kind: 'chained'; seq: number; prev: string; chain: string | undefined; sidecar: string | undefined };

/** Classifies one line (bytes without the newline). Never throws. */
export function classifyAuditLine(line: Uint8Array): AuditLine {
  if (line.length === 0) return { kind: 'empty' };
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(line.buffer, line.byteOffset, line.length).toString('utf8'));
  } catch (err) {
    const looksAudit = Buffer.from(line.buffer, line.byteOffset, line.length).indexOf(AUDIT_MARKER) !== -1;
    return { kind: 'invalid_json', looksAudit, detail: err instanceof Error ? err.message : 'invalid JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'other' };
  const obj = value as Record<string, unknown>;
  if (obj.log !== 'audit') return { kind: 'other' };
  if (obj.seq === undefined && obj.prev === undefined) return { kind: 'unchained' };
  const seq = obj.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    return { kind: 'bad_chain_fields', detail: `seq ${short(seq)} is not a non-negative integer` };
  }
  if (!isChainHash(obj.prev)) return { kind: 'bad_chain_fields', detail: `prev ${short(obj.prev)} is not 64 lowercase hex digits` };
  return {
    kind: 'chained',
    seq,
    prev: obj.prev,
    chain: typeof obj.chain === 'string' ? obj.chain : undefined,
    sidecar: typeof obj.sidecar === 'string' ? obj.sidecar : undefined,
  };
}

/** A new chain's ID: 16 hex digits, random (two sidecars of one name still get distinct chains). */
export function newChainId(): string {
  return randomBytes(8).toString('hex');
}

const CHAIN_ID = /^[0-9a-f]{16}$/;

export function isChainId(value: unknown): value is string {
  return typeof value === 'string' && CHAIN_ID.test(value);
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
