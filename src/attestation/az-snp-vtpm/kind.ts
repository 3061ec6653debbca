/**
 * The az-snp-vtpm evidence kind: an Azure confidential VM's HCL report (an SEV-SNP report whose
 * REPORT_DATA binds the paravisor vTPM's attestation key) plus a quote by that key.
 */
import { bindingUserData } from '../binding.js';
import type { EvidenceKind } from '../kind.js';
import { CERT_PART, SNP_REQUIREMENTS } from '../sev-snp/kind.js';
import { tcbClaims } from '../sev-snp/tcb.js';
import { SNP_TRUST, type SnpTrust, type SnpTrustConfig } from '../sev-snp/trust.js';
import { decodePcrs } from '../tpm/evidence.js';
import { recallTpmClock, tpmClockKey } from '../tpm/kind.js';
import { AttestationError } from '../types.js';
import { describeAzSnpVtpm, verifyAzSnpVtpm } from './verify.js';

export const azSnpVtpmKind: EvidenceKind<'az-snp-vtpm', SnpTrust, SnpTrustConfig> = {
  name: 'az-snp-vtpm',
  parts: {
    hcl_report: { mediaType: 'application/vnd.microsoft.azure.hcl-report', required: true, maxBytes: 4096 },
    vcek: CERT_PART,
    attest: { mediaType: 'application/vnd.tcg.tpms-attest', required: true, maxBytes: 1024 },
    signature: { mediaType: 'application/vnd.tcg.tpmt-signature', required: true, maxBytes: 1024 },
    pcrs: { mediaType: 'application/json', required: true, maxBytes: 4096 },
  },
  trust: SNP_TRUST,
  verify({ parts, trust, binding, now, recall }) {
    if (!trust.snpAnchors) throw new AttestationError('collateral_missing', 'no AMD SEV-SNP trust anchors are configured on this sidecar');
    const claims = verifyAzSnpVtpm(
      { hclReport: parts.hcl_report!, ...(parts.vcek ? { vcek: parts.vcek } : {}), attest: parts.attest!, signature: parts.signature!, pcrs: decodePcrs(parts.pcrs!) },
      { snpAnchors: trust.snpAnchors, expectedExtraData: bindingUserData(binding.spki, binding.nonce, 32) },
      now,
    );
    const clock = claims.tpm.clock_state;
    const previous = recallTpmClock(recall, clock.ak_spki_sha256);
    if (previous && (clock.reset_count < previous.reset_count || (clock.reset_count === previous.reset_count && clock.clock < previous.clock))) {
      throw new AttestationError('counter_regression', 'vTPM clock or reset counter went backwards for this attestation key');
    }
    const { clock_state: _c, ...tpmJson } = claims.tpm;
    return {
      claims: { ...claims, tpm: tpmJson },
      normalized: {
        evidence_type: 'az-snp-vtpm',
        tee_type: 'sev-snp',
        runtime_environment: 'az-confidential-compute',
        measurement: claims.snp.measurement,
        guest_svn: claims.snp.guest_svn,
        debug: claims.snp.policy.debug,
        tcb: tcbClaims(claims.snp.reported_tcb),
        chip_id: claims.snp.chip_id,
        pcrs: claims.tpm.pcrs,
        tpm_ak_spki_sha256: claims.tpm.ak_spki_sha256,
      },
      expiresAtMs: Date.parse(claims.snp.cert.not_after),
      remember: { key: tpmClockKey(clock.ak_spki_sha256), value: clock },
    };
  },
  requirements: SNP_REQUIREMENTS,
  describe: (bytes) => describeAzSnpVtpm(bytes),
  sniff: (bytes) => bytes.length >= 4 && bytes.subarray(0, 4).toString('latin1') === 'HCLA',
};
