/**
 * Shared vocabulary of the attestation verifiers and attesters.
 *
 * Each evidence type lives in its own folder (src/attestation/<type>/) and exposes a PURE
 * verifier: `verify(bytes, refs, now) -> claims`. No I/O, no clock except `now`, no caching:
 * callers (the inbound gate and its session cache) decide what to remember.
 */
import { SidecarError } from '../errors.js';

/** The evidence kinds' names (the list is src/attestation/kinds.ts). */
export type { EvidenceType } from './kinds.js';

/**
 * Reason codes shared by every verifier; the audit log, metrics and the JSON denial
 * (`{"error": "Attestation failed: <message>"}`) reuse them.
 */
export type AttestationReason =
  | 'evidence_malformed' // cannot parse: truncated, oversized, bad magic/version/type
  | 'evidence_unsupported' // a version, algorithm or product this verifier does not handle
  | 'signature_invalid' // the report/quote signature does not verify
  | 'chain_invalid' // the signing key's certificate chain does not lead to a configured anchor
  | 'collateral_missing' // no VCEK/VLEK/AK/anchor available to verify with
  | 'collateral_expired' // a certificate or collateral item is outside its validity at `now`
  | 'tcb_mismatch' // the report's TCB/chip differs from what its signing certificate certifies
  | 'binding_mismatch' // the user-data field does not carry the expected binding/nonce
  | 'pcr_mismatch' // PCR digest recomputation failed or a PCR differs from the reference
  | 'counter_regression' // TPM reset/restart counter or clock went backwards for a known AK
  | 'measurement_mismatch'
  | 'debug_enabled'
  | 'tcb_too_low'
  | 'svn_too_low'
  | 'chip_not_allowed'
  | 'ak_not_allowed' // TPM attestation key not among the pinned ones
  | 'reference_values_unavailable' // the named reference values are unknown or expired
  | 'policy_mismatch' // other appraisal failures (tee type, environment, VMPL, ...)
  | 'evidence_stale'; // older than max_evidence_age

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
