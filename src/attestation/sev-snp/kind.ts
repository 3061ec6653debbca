/** The sev-snp evidence kind: an AMD SEV-SNP attestation report with its VCEK/VLEK or certificate table. */
import type { NormalizedClaims } from '../appraise.js';
import { bindingUserData, expectBinding } from '../binding.js';
import type { EvidenceKind, RequirementFormats } from '../kind.js';
import { tsmAttesterSection, type TsmAttesterConfig } from '../tsm/section.js';
import { AttestationError } from '../types.js';
import { loadSnpAnchors } from './anchors.js';
import { describeSnpReport, type SnpClaims } from './claims.js';
import { SNP_REPORT_SIZE } from './report.js';
import { tcbClaims } from './tcb.js';
import { SNP_TRUST, type SnpTrust, type SnpTrustConfig } from './trust.js';
import { verifySnpReport } from './verify.js';

export const CERT_PART = { mediaType: 'application/pkix-cert', required: false, maxBytes: 4096 } as const;

export function snpNormalized(claims: SnpClaims): NormalizedClaims {
  return {
    evidence_type: 'sev-snp',
    tee_type: 'sev-snp',
    measurement: claims.measurement,
    guest_svn: claims.guest_svn,
    debug: claims.policy.debug,
    tcb: tcbClaims(claims.reported_tcb),
    chip_id: claims.chip_id,
  };
}

/** SEV-SNP TCB_VERSION components (fmc exists from Turin on) and the 64-byte CHIP_ID. */
export const SNP_REQUIREMENTS: RequirementFormats = {
  measurementHexDigits: 96,
  tcbComponents: ['bootloader', 'tee', 'snp', 'microcode', 'fmc'],
  chipId: { label: 'SEV-SNP chip ID', hexDigits: 128 },
};

const NO_ANCHORS = 'no AMD SEV-SNP trust anchors are configured on this sidecar';

export const sevSnpKind: EvidenceKind<'sev-snp', SnpTrust, SnpTrustConfig, TsmAttesterConfig<'sev-snp'>> = {
  name: 'sev-snp',
  parts: {
    report: { mediaType: 'application/vnd.amd.sev-snp.attestation-report', required: true, maxBytes: 1184 },
    vcek: CERT_PART,
    cert_table: { mediaType: 'application/vnd.amd.sev-snp.cert-table', required: false, maxBytes: 8192 },
  },
  trust: SNP_TRUST,
  attester: tsmAttesterSection<'sev-snp'>(),
  verify({ parts, trust, binding, now }) {
    if (!trust.snpAnchors) throw new AttestationError('collateral_missing', NO_ANCHORS);
    const report = parts.report!;
    const vcek = parts.vcek ?? (parts.cert_table ? undefined : trust.kds?.vcekFor(report));
    if (!vcek && !parts.cert_table && trust.kds) {
      // The caller asks KDS in the background (fetchMissingCollateral); this attempt fails closed.
      throw new AttestationError('collateral_missing', 'no VCEK for this report yet (not in the evidence; requested from AMD KDS in the background)');
    }
    const claims = verifySnpReport(
      report,
      { anchors: trust.snpAnchors, ...(vcek ? { vcek } : {}), ...(parts.cert_table ? { certTable: parts.cert_table } : {}) },
      now,
    );
    expectBinding(claims.report_data, bindingUserData(binding.spki, binding.nonce));
    return { claims: { ...claims }, normalized: snpNormalized(claims), expiresAtMs: Date.parse(claims.cert.not_after) };
  },
  fetchMissingCollateral(parts, trust) {
    const report = parts.report!;
    if (trust.snpAnchors && trust.kds && !parts.vcek && !parts.cert_table && !trust.kds.vcekFor(report)) void trust.kds.prefetch(report);
  },
  requirements: SNP_REQUIREMENTS,
  describe: (bytes) => describeSnpReport(bytes),
  describeParts: (parts) => ({ report: describeSnpReport(parts.report!) }),
  sniff: (bytes) => bytes.length === SNP_REPORT_SIZE,
  offline: {
    options: { cert: { type: 'string' }, anchors: { type: 'string', multiple: true } },
    verify(bytes, flags, now, files) {
      const anchorFiles = (flags.anchors ?? []) as string[];
      if (anchorFiles.length === 0) return { refused: 'collateral_missing: --anchors DIR_OR_PEM (AMD ARK/ASK/ASVK) is required', claims: describeSnpReport(bytes) };
      const anchors = loadSnpAnchors(anchorFiles.flatMap((p) => files.pem(p)));
      const vcek = typeof flags.cert === 'string' ? files.read(flags.cert) : undefined;
      const snpClaims = verifySnpReport(bytes, { anchors, ...(vcek ? { vcek } : {}) }, now);
      return { claims: { ...snpClaims }, normalized: snpNormalized(snpClaims) };
    },
    describeOnFailure: (bytes) => describeSnpReport(bytes),
  },
};
