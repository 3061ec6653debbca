/**
 * JSON-friendly claims of an SEV-SNP report: hex lower-case for byte fields and u64s, numbers
 * for small integers. Shared by verifySnpReport (verified claims) and describeSnpReport
 * (decode only, for `attest-sidecar inspect-evidence`).
 */
import { hex } from '../types.js';
import { parseSnpReport, u64Hex, type SnpFirmwareVersion, type SnpReport } from './report.js';
import { decodeTcb, productFromCpuid, type SnpProduct, type SnpTcb } from './tcb.js';

export interface SnpPolicyClaims {
  raw: string;
  abi_major: number;
  abi_minor: number;
  smt: boolean;
  migrate_ma: boolean;
  debug: boolean;
  single_socket: boolean;
}

export interface SnpPlatformInfoClaims {
  raw: string;
  smt_enabled: boolean;
  tsme_enabled: boolean;
  ecc_enabled: boolean;
  rapl_disabled: boolean;
  ciphertext_hiding_enabled: boolean;
  alias_check_complete: boolean;
}

export interface SnpReportClaims {
  type: 'sev-snp';
  version: number;
  guest_svn: number;
  policy: SnpPolicyClaims;
  vmpl: number;
  measurement: string;
  host_data: string;
  report_data: string;
  family_id: string;
  image_id: string;
  id_key_digest: string;
  author_key_digest: string;
  author_key_en: boolean;
  report_id: string;
  report_id_ma: string;
  chip_id: string;
  mask_chip_key: boolean;
  signing_key: 'vcek' | 'vlek';
  platform_info: SnpPlatformInfoClaims;
  current_tcb: SnpTcb;
  reported_tcb: SnpTcb;
  committed_tcb: SnpTcb;
  launch_tcb: SnpTcb;
  firmware: { current: SnpFirmwareVersion; committed: SnpFirmwareVersion };
  /** v3+ reports only. */
  cpuid?: { family: number; model: number; stepping: number };
  /** v5+ reports only (hex u64). */
  launch_mit_vector?: string;
  current_mit_vector?: string;
}

export interface SnpClaims extends SnpReportClaims {
  product: SnpProduct;
  /** Collateral expiry: the earliest notAfter of the signing certificate and its chain. */
  cert: { not_after: string };
}

const bit = (v: bigint, n: number) => ((v >> BigInt(n)) & 1n) === 1n;

export function reportClaims(report: SnpReport, product: SnpProduct): SnpReportClaims {
  const claims: SnpReportClaims = {
    type: 'sev-snp',
    version: report.version,
    guest_svn: report.guestSvn,
    policy: {
      raw: u64Hex(report.policy),
      abi_major: Number((report.policy >> 8n) & 0xffn),
      abi_minor: Number(report.policy & 0xffn),
      smt: bit(report.policy, 16),
      migrate_ma: bit(report.policy, 18),
      debug: bit(report.policy, 19),
      single_socket: bit(report.policy, 20),
    },
    vmpl: report.vmpl,
    measurement: hex(report.measurement),
    host_data: hex(report.hostData),
    report_data: hex(report.reportData),
    family_id: hex(report.familyId),
    image_id: hex(report.imageId),
    id_key_digest: hex(report.idKeyDigest),
    author_key_digest: hex(report.authorKeyDigest),
    author_key_en: report.authorKeyEn,
    report_id: hex(report.reportId),
    report_id_ma: hex(report.reportIdMa),
    chip_id: hex(report.chipId),
    mask_chip_key: report.maskChipKey,
    signing_key: report.signingKey,
    platform_info: {
      raw: u64Hex(report.platformInfo),
      smt_enabled: bit(report.platformInfo, 0),
      tsme_enabled: bit(report.platformInfo, 1),
      ecc_enabled: bit(report.platformInfo, 2),
      rapl_disabled: bit(report.platformInfo, 3),
      ciphertext_hiding_enabled: bit(report.platformInfo, 4),
      alias_check_complete: bit(report.platformInfo, 5),
    },
    current_tcb: decodeTcb(report.currentTcb, product),
    reported_tcb: decodeTcb(report.reportedTcb, product),
    committed_tcb: decodeTcb(report.committedTcb, product),
    launch_tcb: decodeTcb(report.launchTcb, product),
    firmware: { current: report.current, committed: report.committed },
  };
  if (report.cpuid) claims.cpuid = { ...report.cpuid };
  if (report.launchMitVector !== undefined) claims.launch_mit_vector = u64Hex(report.launchMitVector);
  if (report.currentMitVector !== undefined) claims.current_mit_vector = u64Hex(report.currentMitVector);
  return claims;
}

export interface SnpReportDescription extends SnpReportClaims {
  verified: false;
  /** From the CPUID fields (v3+), else null: the TCBs are then shown in the Milan/Genoa layout. */
  product: SnpProduct | null;
}

/**
 * Decodes a report without verifying anything (no signature, no chain). For inspection only:
 * nothing in the result is trustworthy.
 */
export function describeSnpReport(bytes: Uint8Array): SnpReportDescription {
  const report = parseSnpReport(bytes);
  let product: SnpProduct | null = null;
  if (report.cpuid) {
    try {
      product = productFromCpuid(report.cpuid);
    } catch {
      product = null; // unknown CPU: still show the fields
    }
  }
  return { verified: false, product, ...reportClaims(report, product ?? 'Milan') };
}
