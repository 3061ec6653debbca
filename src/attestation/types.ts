/**
 * Shared vocabulary of the attestation verifiers and attesters.
 *
 * Each evidence type lives in its own folder (src/attestation/<type>/) and exposes a PURE
 * verifier: `verify(bytes, refs, now) -> claims`. No I/O, no clock except `now`, no caching:
 * callers (the inbound gate and its session cache) decide what to remember.
 */
import { SidecarError } from '../errors.js';
import type { ReasonCodeOf } from '../reasons.js';

/** The evidence kinds' names (the list is src/attestation/kinds.ts). */

/**
 * Reason codes shared by every verifier: the catalogue's `attestation` kind (src/reasons.ts). The
 * audit log, metrics and the JSON denial (`{"error": "Attestation failed: <message>"}`) reuse them.
 */
export type AttestationReason = ReasonCodeOf<'attestation'>;

export class AttestationError extends SidecarError {
  declare readonly reason: AttestationReason;
  constructor(reason: AttestationReason, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
  }
}

/** Hex helpers used by every verifier for claims (lower-case, no separators). */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
