/**
 * Attesters produce this sidecar's own evidence, bound to its SVID key. Evidence is produced
 * once per SVID (and on demand for a verifier's nonce), never per request.
 */
import { createHash } from 'node:crypto';
import { encodeEvidence, type Evidence } from './envelope.js';
import type { EvidenceType } from './kinds.js';

export interface Attester {
  readonly type: EvidenceType;
  /** Evidence whose user data binds `spki` (and `nonce`, when a verifier asked for one). */
  produce(spki: Uint8Array, nonce?: Uint8Array): Promise<Evidence>;
  close?(): Promise<void>;
}

/** Evidence ready to send: the header value and its id (what `attest-evidence-ref` carries). */
export interface PreparedEvidence {
  readonly header: string;
  readonly id: string;
}

export function prepareEvidence(evidence: Evidence): PreparedEvidence {
  const header = encodeEvidence(evidence);
  return { header, id: evidenceId(header) };
}

/** Short, collision-resistant id of an envelope (base64url of the first 16 bytes of SHA-256). */
export function evidenceId(header: string): string {
  return createHash('sha256').update(header).digest().subarray(0, 16).toString('base64url');
}

// The sim attester lives with its kind; re-exported here where the other attesters' callers look.
