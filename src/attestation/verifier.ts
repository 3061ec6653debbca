/**
 * Evidence verification dispatch: envelope -> the type's pure verifier -> the binding check
 * -> normalized claims for appraisal. Cold path only (once per peer key and evidence).
 */
import type { KeyObject } from 'node:crypto';
import type { NormalizedClaims } from './appraise.js';
import { bindingUserData } from './binding.js';
import type { Evidence } from './envelope.js';
import { verifySimReport } from './sim/report.js';
import { verifySnpReport } from './sev-snp/verify.js';
import type { SnpTrustAnchors } from './sev-snp/anchors.js';
import type { SnpTcb } from './sev-snp/tcb.js';
import { verifyTpmQuote, type TpmClockState } from './tpm/verify.js';
import { resolveAk, spkiSha256 } from './tpm/ak.js';
import { decodePcrs } from './tpm/evidence.js';
import { verifyAzSnpVtpm } from './az-snp-vtpm/verify.js';
import type { KdsCollateral } from './sev-snp/kds.js';
import { AttestationError, type EvidenceType } from './types.js';

/** Trust anchors and reference material the inbound side verifies evidence with. */
export interface VerifierTrust {
  simKeys: readonly KeyObject[];
  /** AMD ARK/ASK/ASVK per product; absent: SEV-SNP evidence is refused (collateral_missing). */
  snpAnchors?: SnpTrustAnchors;
  /** Trusted TPM attestation keys (pinned by TPM Name) and/or CAs that certify AKs (ak_cert part). */
  tpm?: { names?: readonly Uint8Array[]; caCerts?: readonly string[] };
  /** VCEKs for SEV-SNP reports that arrive without one (memory lookups; fetching is in the background). */
  kds?: KdsCollateral;
}

/**
 * State the caller keeps across verifications (the pure verifiers only read it): the last
 * clock/reset/restart counters seen per TPM AK, so a replayed older quote is refused.
 */
export interface VerifierState {
  tpmClocks: Map<string, TpmClockState>;
}

export interface VerifiedEvidence {
  readonly type: EvidenceType;
  /** The verifier's full claims (JSON-friendly), for /status and the audit trail. */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly normalized: NormalizedClaims;
  /** Collateral expiry (e.g. the VCEK's notAfter), epoch ms, when the evidence has one. */
  readonly expiresAtMs?: number;
}

export interface BindingExpectation {
  /** DER SubjectPublicKeyInfo of the peer's SVID on this very connection. */
  spki: Uint8Array;
  nonce?: Uint8Array;
}

export function verifyEvidence(
  ev: Evidence,
  trust: VerifierTrust,
  binding: BindingExpectation,
  now: Date,
  state?: VerifierState,
): VerifiedEvidence {
  switch (ev.type) {
    case 'tpm': {
      if (!trust.tpm || ((trust.tpm.names?.length ?? 0) === 0 && (trust.tpm.caCerts?.length ?? 0) === 0)) {
        throw new AttestationError('collateral_missing', 'no trusted TPM attestation key names or AK CAs are configured on this sidecar');
      }
      const ak = resolveAk(ev.parts.ak!);
      const akHex = spkiSha256(ak.key);
      const previous = state?.tpmClocks.get(akHex);
      const claims = verifyTpmQuote(
        { attest: ev.parts.attest!, signature: ev.parts.signature!, pcrs: decodePcrs(ev.parts.pcrs!), ak: ev.parts.ak! },
        {
          expectedExtraData: bindingUserData(binding.spki, binding.nonce, 32),
          akTrust: { ...(trust.tpm.names ? { names: [...trust.tpm.names] } : {}), ...(trust.tpm.caCerts ? { caCerts: [...trust.tpm.caCerts] } : {}) },
          ...(ev.parts.ak_cert ? { akCertChain: [`-----BEGIN CERTIFICATE-----\n${ev.parts.ak_cert.toString('base64')}\n-----END CERTIFICATE-----\n`] } : {}),
          ...(previous ? { previous } : {}),
        },
        now,
      );
      state?.tpmClocks.set(akHex, claims.clock_state);
      const { clock_state: _s, ...json } = claims;
      return {
        type: 'tpm',
        claims: { ...json },
        normalized: { evidence_type: 'tpm', tee_type: 'tpm', pcrs: claims.pcrs, tpm_ak_spki_sha256: claims.ak_spki_sha256 },
      };
    }
    case 'sim': {
      const claims = verifySimReport(ev.parts.report!, { keys: trust.simKeys }, now);
      expectUserData(claims.report_data, bindingUserData(binding.spki, binding.nonce).toString('hex'));
      return {
        type: 'sim',
        claims: { ...claims },
        normalized: {
          evidence_type: 'sim',
          tee_type: 'sim',
          measurement: claims.measurement,
          guest_svn: claims.guest_svn,
          debug: claims.debug,
          tcb: simTcb(claims.tcb),
          chip_id: claims.chip_id,
          issued_at: claims.issued_at,
        },
      };
    }
    case 'sev-snp': {
      if (!trust.snpAnchors) throw new AttestationError('collateral_missing', 'no AMD SEV-SNP trust anchors are configured on this sidecar');
      const report = ev.parts.report!;
      const vcek = ev.parts.vcek ?? (ev.parts.cert_table ? undefined : trust.kds?.vcekFor(report));
      if (!vcek && !ev.parts.cert_table && trust.kds) {
        // Never fetch on the request path: ask for it in the background; this attempt fails closed.
        void trust.kds.prefetch(report);
        throw new AttestationError('collateral_missing', 'no VCEK for this report yet (not in the evidence; requested from AMD KDS in the background)');
      }
      const claims = verifySnpReport(
        report,
        { anchors: trust.snpAnchors, ...(vcek ? { vcek } : {}), ...(ev.parts.cert_table ? { certTable: ev.parts.cert_table } : {}) },
        now,
      );
      expectUserData(claims.report_data, bindingUserData(binding.spki, binding.nonce).toString('hex'));
      const t = claims.reported_tcb;
      return {
        type: 'sev-snp',
        claims: { ...claims },
        normalized: {
          evidence_type: 'sev-snp',
          tee_type: 'sev-snp',
          measurement: claims.measurement,
          guest_svn: claims.guest_svn,
          debug: claims.policy.debug,
          tcb: tcbClaims(t),
          chip_id: claims.chip_id,
        },
        expiresAtMs: Date.parse(claims.cert.not_after),
      };
    }
    case 'az-snp-vtpm': {
      if (!trust.snpAnchors) throw new AttestationError('collateral_missing', 'no AMD SEV-SNP trust anchors are configured on this sidecar');
      const pcrs = decodePcrs(ev.parts.pcrs!);
      const previousAll = state ? [...state.tpmClocks.values()] : [];
      const claims = verifyAzSnpVtpm(
        { hclReport: ev.parts.hcl_report!, ...(ev.parts.vcek ? { vcek: ev.parts.vcek } : {}), attest: ev.parts.attest!, signature: ev.parts.signature!, pcrs },
        { snpAnchors: trust.snpAnchors, expectedExtraData: bindingUserData(binding.spki, binding.nonce, 32) },
        now,
      );
      const akHex = claims.tpm.clock_state.ak_spki_sha256;
      const previous = previousAll.find((c) => c.ak_spki_sha256 === akHex);
      if (previous && (claims.tpm.clock_state.reset_count < previous.reset_count ||
        (claims.tpm.clock_state.reset_count === previous.reset_count && claims.tpm.clock_state.clock < previous.clock))) {
        throw new AttestationError('counter_regression', 'vTPM clock or reset counter went backwards for this attestation key');
      }
      state?.tpmClocks.set(akHex, claims.tpm.clock_state);
      const t = claims.snp.reported_tcb;
      const { clock_state: _c, ...tpmJson } = claims.tpm;
      return {
        type: 'az-snp-vtpm',
        claims: { ...claims, tpm: tpmJson },
        normalized: {
          evidence_type: 'az-snp-vtpm',
          tee_type: 'sev-snp',
          runtime_environment: 'az-confidential-compute',
          measurement: claims.snp.measurement,
          guest_svn: claims.snp.guest_svn,
          debug: claims.snp.policy.debug,
          tcb: tcbClaims(t),
          chip_id: claims.snp.chip_id,
          pcrs: claims.tpm.pcrs,
          tpm_ak_spki_sha256: claims.tpm.ak_spki_sha256,
        },
        expiresAtMs: Date.parse(claims.snp.cert.not_after),
      };
    }
    default:
      throw new AttestationError('evidence_unsupported', `no verifier for evidence type ${ev.type} is configured on this sidecar`);
  }
}

function expectUserData(actual: string, expected: string): void {
  if (actual !== expected) {
    throw new AttestationError(
      'binding_mismatch',
      'the evidence is not bound to the SVID key of this connection (or to the nonce this sidecar issued)',
    );
  }
}

/** The sim report's TCB uses the SEV-SNP Milan/Genoa TCB_VERSION layout (little-endian u64). */
function simTcb(hex16: string): Record<string, number> {
  const v = BigInt(`0x${hex16}`);
  const byte = (i: number) => Number((v >> BigInt(8 * i)) & 0xffn);
  return { bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7) };
}

/** Platform TCB components of an SEV-SNP TCB_VERSION, for appraisal's minimum_tcb. */
export function tcbClaims(t: SnpTcb): Record<string, number> {
  return { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode, ...(t.fmc !== undefined ? { fmc: t.fmc } : {}) };
}
