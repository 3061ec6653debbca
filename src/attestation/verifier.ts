/**
 * Evidence verification dispatch: envelope -> its kind's pure verifier (which checks the binding)
 * -> normalized claims for appraisal. Cold path only (once per peer key and evidence).
 *
 * Pure: what earlier verifications left behind (the TPM clock memory) comes in through `recall`
 * and what this one wants remembered goes out in `remember`; the caller (the inbound gate) keeps it.
 */
import type { NormalizedClaims } from './appraise.js';
import type { Evidence } from './envelope.js';
import type { BindingExpectation, Remembered } from './kind.js';
import { kindNamed, type EvidenceType, type VerifierTrust } from './kinds.js';
import { AttestationError } from './types.js';

export interface VerifiedEvidence {
  readonly type: EvidenceType;
  /** The verifier's full claims (JSON-friendly), for /status and the audit trail. */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly normalized: NormalizedClaims;
  /** Collateral expiry (e.g. the VCEK's notAfter), epoch ms, when the evidence has one. */
  readonly expiresAtMs?: number;
  /** What the caller should remember for later verifications (see `recall`). */
  readonly remember?: Remembered;
}

const NOTHING_REMEMBERED = (): undefined => undefined;

export function verifyEvidence(
  presented: Evidence,
  trust: VerifierTrust,
  binding: BindingExpectation,
  now: Date,
  recall: (key: string) => unknown = NOTHING_REMEMBERED,
): VerifiedEvidence {
  const verify = kindNamed(presented.type)?.verify;
  if (!verify) throw new AttestationError('evidence_unsupported', `no verifier for evidence type ${presented.type} is configured on this sidecar`);
  return { type: presented.type, ...verify({ parts: presented.parts, trust, binding, now, recall }) };
}

/**
 * After a verification failed with collateral_missing: lets the evidence's kind fetch what was
 * missing in the background, so that a later attempt finds it in memory. Never waits.
 */
export function fetchMissingCollateral(evidence: Evidence, trust: VerifierTrust): void {
  try {
    kindNamed(evidence.type)?.fetchMissingCollateral?.(evidence.parts, trust);
  } catch {
    // Best effort: the attempt that wanted the collateral has already failed closed.
  }
}
