/**
 * The inbound attestation gate: decides whether a peer's evidence satisfies its agent's
 * `attestation_requirements`, with the session cache in front of verification.
 *
 * Headers (wire protocol v1, see docs/attestation.md, "Evidence on the wire"):
 *   request  attest-evidence: <envelope>      full evidence (first contact, or answering a challenge)
 *   request  attest-evidence-ref: <id>        the id of evidence this peer already presented
 *   request  attest-nonce: <base64url>        the nonce a per-request challenge issued
 *   response attest-challenge: evidence       401: send the full evidence
 *   response attest-challenge: nonce=<b64u>   401: send fresh evidence bound to this nonce
 *
 * Session mode (default): a warm connection whose ref matches its last verdict for the current
 * policy version costs two string compares and a number compare.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { appraise } from '../attestation/appraise.js';
import { evidenceId } from '../attestation/attester.js';
import { decodeEvidence, type Evidence } from '../attestation/envelope.js';
import { VerdictCache, type Verdict } from '../attestation/session-cache.js';
import { AttestationError } from '../attestation/types.js';
import { fetchMissingCollateral, verifyEvidence } from '../attestation/verifier.js';
import { type VerifierTrust } from '../attestation/kinds.js';
import type { AttestationRequirements } from '../attestation/requirements.js';
import { needsFreshEvidence } from '../policy/decide.js';
import { applyReferenceValues, type ReferenceValueStore } from '../attestation/reference-values.js';
import { refuse, type Refusal } from '../reasons.js';

export const H_EVIDENCE = 'attest-evidence';
export const H_REF = 'attest-evidence-ref';
export const H_NONCE = 'attest-nonce';
export const H_CHALLENGE = 'attest-challenge';
export const ATTESTATION_HEADERS: readonly string[] = [H_EVIDENCE, H_REF, H_NONCE, H_CHALLENGE];

const NONCE_TTL_MS = 30_000;
const MAX_OUTSTANDING_NONCES = 10_000;
/**
 * Outstanding nonces per peer key: one peer asking for challenges without answering them drops
 * its own oldest, never other peers'. 256 matches the default per-peer connection cap, so a peer
 * with one challenge open on each of its connections keeps them all.
 */
export const MAX_NONCES_PER_PEER = 256;

/** What the gate remembers per connection (the peer key cannot change on a connection). */
export interface AttestationSession {
  readonly spki: Buffer;
  readonly spkiSha256Hex: string;
  /** Peer SVID notAfter: no verdict outlives it. */
  readonly notAfterMs: number;
  lastRef?: string;
  lastVersion?: string;
  lastRvVersion?: string;
  lastVerdict?: Verdict;
}

/**
 * What check() found: the verdict the peer's evidence earned, or the refusal to answer with (401
 * with an `attest-challenge` header when evidence is missing or must be fresh, 403 when it failed).
 */
export type GateResult = Verdict | Refusal;

export function isGateRefusal(result: GateResult): result is Refusal {
  return (result as Refusal).body !== undefined;
}

/** Asks for the full evidence: the same frozen refusal every time. */
const EVIDENCE_CHALLENGE = refuse('attestation_required', 'Attestation required', { [H_CHALLENGE]: 'evidence' });

export interface GateMetrics {
  verification(type: string, result: string, seconds: number): void;
}

export class AttestationGate {
  readonly cache: VerdictCache;
  private readonly nonces = new Map<string, { spkiHex: string; expiresAtMs: number }>();
  /** The outstanding nonces of each peer key, oldest first (entries exist only while non-empty). */
  private readonly peerNonces = new Map<string, string[]>();
  /**
   * What verifications left for later ones (the last TPM clock per attestation key, so that a
   * replayed older quote is refused): the verifiers are pure, the gate keeps their memory.
   */
  private readonly remembered = new Map<string, unknown>();
  private readonly recall = (key: string): unknown => this.remembered.get(key);

  /** Version of the loaded reference values ('' without any): part of every verdict's key. */
  private rvVersion = '';

  constructor(
    private trust: VerifierTrust,
    private readonly now: () => number,
    private readonly metrics?: GateMetrics,
    cacheSize = 10_000,
    private readonly referenceValues?: ReferenceValueStore,
  ) {
    this.cache = new VerdictCache(cacheSize);
    if (referenceValues) {
      this.rvVersion = referenceValues.version();
      referenceValues.on('reload', () => (this.rvVersion = referenceValues.version()));
    }
  }

  setTrust(trust: VerifierTrust): void {
    this.trust = trust;
  }

  /** `action`: the request's mapped action (per-action freshness). */
  check(req: IncomingMessage, session: AttestationSession, requirements: AttestationRequirements, policyVersion: string, action: string): GateResult {
    const evidence = req.headers[H_EVIDENCE];
    if (needsFreshEvidence(requirements, action)) return this.checkFresh(req, session, requirements, evidence);
    const now = this.now();
    if (typeof evidence !== 'string') {
      const ref = req.headers[H_REF];
      if (typeof ref !== 'string') return EVIDENCE_CHALLENGE;
      // Hot path: the connection's last verdict.
      const last = session.lastVerdict;
      if (last !== undefined && session.lastRef === ref && session.lastVersion === policyVersion && session.lastRvVersion === this.rvVersion && now < last.expiresAtMs) {
        this.cache.stats.hits++;
        return last;
      }
      const v = this.cache.get(VerdictCache.key(session.spkiSha256Hex, ref, `${policyVersion}+${this.rvVersion}`), now);
      if (v === undefined) return EVIDENCE_CHALLENGE;
      this.remember(session, ref, policyVersion, v);
      return v;
    }
    const id = evidenceId(evidence);
    const key = VerdictCache.key(session.spkiSha256Hex, id, `${policyVersion}+${this.rvVersion}`);
    const hit = this.cache.get(key, now);
    if (hit) {
      this.remember(session, id, policyVersion, hit);
      return hit;
    }
    const result = this.verify(evidence, session, requirements, undefined, now);
    if (isGateRefusal(result)) return result;
    this.cache.set(key, result);
    this.remember(session, id, policyVersion, result);
    return result;
  }

  private checkFresh(
    req: IncomingMessage,
    session: AttestationSession,
    requirements: AttestationRequirements,
    evidence: string | string[] | undefined,
  ): GateResult {
    const nonceB64 = req.headers[H_NONCE];
    if (typeof evidence !== 'string' || typeof nonceB64 !== 'string') {
      return this.nonceChallenge(session, 'Fresh attestation required', 'attestation_fresh_required');
    }
    const now = this.now();
    const issued = this.nonces.get(nonceB64);
    // Single use, bound to the peer key it was issued to, short-lived.
    this.forgetNonce(nonceB64);
    if (!issued || issued.spkiHex !== session.spkiSha256Hex || now >= issued.expiresAtMs) {
      return this.nonceChallenge(session, 'Attestation nonce unknown, expired or already used', 'attestation_nonce_invalid');
    }
    return this.verify(evidence, session, requirements, Buffer.from(nonceB64, 'base64url'), now);
  }

  private verify(header: string, session: AttestationSession, requirements: AttestationRequirements, nonce: Buffer | undefined, now: number): GateResult {
    const start = performance.now();
    let type = 'unknown';
    let decoded: Evidence | undefined;
    try {
      decoded = decodeEvidence(header);
      type = decoded.type;
      let effective: AttestationRequirements = requirements;
      let rvExpiresAtMs = Infinity;
      if (requirements.referenceValues !== undefined) {
        const rv = this.referenceValues?.get(requirements.referenceValues);
        if (!rv) throw new AttestationError('reference_values_unavailable', `reference values '${requirements.referenceValues}' are not loaded or have expired`);
        effective = applyReferenceValues(requirements, rv);
        rvExpiresAtMs = rv.expiresAt.getTime();
      }
      const verified = verifyEvidence(decoded, this.trust, { spki: session.spki, ...(nonce ? { nonce } : {}) }, new Date(now), this.recall);
      if (verified.remember) this.remembered.set(verified.remember.key, verified.remember.value);
      appraise(verified.normalized, effective, new Date(now));
      let expiresAtMs = Math.min(session.notAfterMs, rvExpiresAtMs);
      if (verified.expiresAtMs !== undefined) expiresAtMs = Math.min(expiresAtMs, verified.expiresAtMs);
      if (requirements.maxEvidenceAgeSeconds !== undefined) expiresAtMs = Math.min(expiresAtMs, now + requirements.maxEvidenceAgeSeconds * 1000);
      this.metrics?.verification(type, 'success', (performance.now() - start) / 1000);
      return { claims: verified.claims, evidenceType: verified.type, expiresAtMs, verifiedAtMs: now };
    } catch (err) {
      // Fail closed on anything, including a verifier bug: the request is denied, never crashes us.
      const reason = err instanceof AttestationError ? err.reason : 'verification_error';
      // Collateral is fetched in the background, never on the request path: this attempt fails closed.
      if (reason === 'collateral_missing' && decoded) fetchMissingCollateral(decoded, this.trust);
      const message = err instanceof AttestationError ? err.message : `evidence could not be verified (${(err as Error)?.message ?? String(err)})`;
      this.metrics?.verification(type, reason, (performance.now() - start) / 1000);
      return refuse(reason, `Attestation failed: ${message}`);
    }
  }

  private remember(session: AttestationSession, ref: string, version: string, v: Verdict): void {
    session.lastRef = ref;
    session.lastVersion = version;
    session.lastRvVersion = this.rvVersion;
    session.lastVerdict = v;
  }

  private nonceChallenge(session: AttestationSession, error: string, reason: 'attestation_fresh_required' | 'attestation_nonce_invalid'): GateResult {
    const now = this.now();
    const own = this.peerNonces.get(session.spkiSha256Hex);
    if (own !== undefined && own.length >= MAX_NONCES_PER_PEER) this.forgetNonce(own[0]!);
    if (this.nonces.size >= MAX_OUTSTANDING_NONCES) {
      for (const [n, v] of this.nonces) if (now >= v.expiresAtMs) this.forgetNonce(n);
      // Still full: drop the oldest rather than grow without bound.
      while (this.nonces.size >= MAX_OUTSTANDING_NONCES) this.forgetNonce(this.nonces.keys().next().value as string);
    }
    const nonce = randomBytes(32).toString('base64url');
    this.nonces.set(nonce, { spkiHex: session.spkiSha256Hex, expiresAtMs: now + NONCE_TTL_MS });
    const list = this.peerNonces.get(session.spkiSha256Hex);
    if (list) list.push(nonce);
    else this.peerNonces.set(session.spkiSha256Hex, [nonce]);
    return refuse(reason, error, { [H_CHALLENGE]: `nonce=${nonce}` });
  }

  private forgetNonce(nonce: string): void {
    const issued = this.nonces.get(nonce);
    if (issued === undefined) return;
    this.nonces.delete(nonce);
    const list = this.peerNonces.get(issued.spkiHex);
    if (list === undefined) return;
    const i = list.indexOf(nonce);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.peerNonces.delete(issued.spkiHex);
  }
}
