/**
 * Azure confidential VM evidence (SEV-SNP behind a paravisor vTPM), pure verifier.
 *
 * Chain of trust, checked in this order (each link only after the one it rests on):
 *   1. HCL structure                                   evidence_malformed / evidence_unsupported
 *   2. SNP report verifies (VCEK -> ASK -> ARK)        verifySnpReport's reasons
 *   3. REPORT_DATA = H(runtime data) || zeros          binding_mismatch
 *   4. AK = runtime JSON's HCLAkPub                    evidence_malformed
 *   5. vTPM quote verifies with that AK                signature_invalid
 *   6. quote extraData = expected nonce/binding        binding_mismatch
 *   7. PCR digest                                      pcr_mismatch
 *   8. TPM clock/counters did not go backwards         counter_regression
 * The runtime JSON is not even parsed before step 3: until then it is unauthenticated bytes.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { verifySnpReport } from '../sev-snp/verify.js';
import type { SnpTrustAnchors } from '../sev-snp/anchors.js';
import { describeSnpReport, type SnpClaims, type SnpReportDescription } from '../sev-snp/claims.js';
import { describeTpmQuote, verifyTpmQuote, type TpmClaims, type TpmClockState, type TpmQuoteInput } from '../tpm/verify.js';
import { AttestationError, hex } from '../types.js';
import {
  HCL_HASH_SIZE,
  hclAkPub,
  parseHclLayout,
  parseRuntimeJson,
  type HclHashType,
  type HclLayout,
} from './hcl.js';

export interface AzSnpVtpmInput {
  /** The HCL report as read from vTPM NV index 0x01400001 (2600 bytes on Azure). */
  hclReport: Uint8Array;
  /** VCEK (DER or PEM; a PEM bundle's first certificate is used). */
  vcek?: Uint8Array | string;
  /** TPMS_ATTEST bytes exactly as signed. */
  attest: Uint8Array;
  /** TPMT_SIGNATURE, or raw RSASSA-PKCS1-v1_5/SHA-256 bytes (Azure's form: exactly the modulus length). */
  signature: Uint8Array;
  pcrs: { alg: 'sha256' | 'sha1' | 'sha384'; values: Record<number, string> };
}

export interface AzSnpVtpmRefs {
  snpAnchors: SnpTrustAnchors;
  /** When set, the quote's extraData must equal it exactly. */
  expectedExtraData?: Uint8Array;
  /** Last accepted clock state of the same AK (rollback detection). */
  previous?: TpmClockState;
}

export interface HclClaims {
  version: number;
  hash_type: HclHashType;
  /** H(runtime data) as REPORT_DATA carries it. */
  runtime_data_digest: string;
}

export interface AzSnpVtpmClaims {
  type: 'az-snp-vtpm';
  tee_type: 'sev-snp';
  runtime_environment: 'az-confidential-compute';
  snp: SnpClaims;
  tpm: TpmClaims;
  hcl: HclClaims;
  /** The runtime JSON's "vm-configuration" object (secure-boot, tpm-enabled, vmUniqueId, ...). */
  vm_configuration?: Record<string, unknown>;
  /** The runtime JSON's "user-data", lower-case hex. */
  user_data?: string;
}

export function verifyAzSnpVtpm(input: AzSnpVtpmInput, refs: AzSnpVtpmRefs, now: Date): AzSnpVtpmClaims {
  if (!input || typeof input !== 'object') throw new AttestationError('evidence_malformed', 'Azure vTPM evidence: expected an object');
  if (!refs?.snpAnchors) throw new AttestationError('collateral_missing', 'no AMD SEV-SNP trust anchors to verify the Azure HCL report with');
  const hcl = parseHclLayout(input.hclReport);

  const snp = verifySnpReport(hcl.snpReport, { anchors: refs.snpAnchors, ...(input.vcek !== undefined && { vcek: input.vcek }) }, now);
  const digest = checkRuntimeDataBinding(hcl, Buffer.from(snp.report_data, 'hex'));

  const runtime = parseRuntimeJson(hcl.runtimeData);
  const ak = hclAkPub(runtime);
  const extras = runtimeExtras(runtime);

  const tpm = verifyTpmQuote(
    {
      attest: input.attest,
      signature: input.signature,
      ...(isRawRsaSignature(input.signature, ak) && { signatureScheme: { sigAlg: 'rsassa', hashAlg: 'sha256' } }),
      pcrs: input.pcrs,
      ak,
    } satisfies TpmQuoteInput,
    {
      // The AK is trusted because the verified SNP report vouches for the runtime data holding it.
      akTrust: { keys: [ak] },
      ...(refs.expectedExtraData !== undefined && { expectedExtraData: refs.expectedExtraData }),
      ...(refs.previous !== undefined && { previous: refs.previous }),
    },
    now,
  );

  return {
    type: 'az-snp-vtpm',
    tee_type: 'sev-snp',
    runtime_environment: 'az-confidential-compute',
    snp,
    tpm,
    hcl: { version: hcl.header.version, hash_type: hcl.hashType, runtime_data_digest: digest },
    ...extras,
  };
}

/** REPORT_DATA must be H(runtime data) (hash named by the header) followed by zeros. Returns the digest (hex). */
function checkRuntimeDataBinding(hcl: HclLayout, reportData: Buffer): string {
  const digest = createHash(hcl.hashType).update(hcl.runtimeData).digest();
  const size = HCL_HASH_SIZE[hcl.hashType];
  const head = reportData.subarray(0, size);
  const rest = reportData.subarray(size);
  if (!head.equals(digest) || rest.some((b) => b !== 0)) {
    throw new AttestationError(
      'binding_mismatch',
      `HCL runtime data digest does not match SNP REPORT_DATA (${hcl.hashType} ${digest.toString('hex')}, REPORT_DATA ${reportData.toString('hex')})`,
    );
  }
  return digest.toString('hex');
}

/**
 * A raw RSASSA signature is exactly the modulus length; a TPMT_SIGNATURE adds a 6-byte prefix
 * (sigAlg, hashAlg, size). Any other length cannot be an RSA AK's signature.
 */
function isRawRsaSignature(signature: Uint8Array, ak: KeyObject): boolean {
  if (!(signature instanceof Uint8Array) || ak.asymmetricKeyType !== 'rsa') return false;
  const size = Math.ceil((ak.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
  if (signature.length !== size && signature.length !== size + 6) {
    throw new AttestationError(
      'evidence_malformed',
      `quote signature is ${signature.length} bytes; an RSA-${size * 8} AK signature is ${size} (raw) or ${size + 6} (TPMT_SIGNATURE)`,
    );
  }
  return signature.length === size;
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** vm-configuration and user-data, when present; present but ill-typed is malformed (signed data we cannot read). */
function runtimeExtras(runtime: Record<string, unknown>): Pick<AzSnpVtpmClaims, 'vm_configuration' | 'user_data'> {
  const out: Pick<AzSnpVtpmClaims, 'vm_configuration' | 'user_data'> = {};
  const vmc = runtime['vm-configuration'];
  if (vmc !== undefined) {
    if (!vmc || typeof vmc !== 'object' || Array.isArray(vmc)) {
      throw new AttestationError('evidence_malformed', 'HCL runtime data: "vm-configuration" is not an object');
    }
    out.vm_configuration = vmc as Record<string, unknown>;
  }
  const ud = runtime['user-data'];
  if (ud !== undefined) {
    if (typeof ud !== 'string' || !HEX.test(ud)) throw new AttestationError('evidence_malformed', 'HCL runtime data: "user-data" is not hex');
    out.user_data = ud.toLowerCase();
  }
  return out;
}

export interface AzSnpVtpmDescription {
  verified: false;
  hcl: {
    version: number;
    report_size: number;
    request_type: number;
    status: number;
    runtime_data: { version: number; report_type: number; hash_type: HclHashType; size: number; digest: string };
  };
  snp: SnpReportDescription;
  /** The parsed runtime JSON, or the parse error. */
  runtime_data: unknown;
  runtime_data_error?: string;
  /** Whether REPORT_DATA carries H(runtime data) (still unverified: the SNP signature was not checked). */
  report_data_matches_runtime_data: boolean;
  quote?: ReturnType<typeof describeTpmQuote>;
}

/**
 * Decodes an HCL report (and, if given, the quote's TPMS_ATTEST) without verifying anything,
 * for `attest-sidecar inspect-evidence`. Nothing in the result is trustworthy.
 */
export function describeAzSnpVtpm(hclReport: Uint8Array, attest?: Uint8Array): AzSnpVtpmDescription {
  const hcl = parseHclLayout(hclReport);
  const snp = describeSnpReport(hcl.snpReport);
  const digest = createHash(hcl.hashType).update(hcl.runtimeData).digest();
  const expected = Buffer.concat([digest, Buffer.alloc(64 - digest.length)]);
  let runtime: unknown = null;
  let runtimeError: string | undefined;
  try {
    runtime = parseRuntimeJson(hcl.runtimeData);
  } catch (err) {
    runtimeError = (err as Error).message;
  }
  return {
    verified: false,
    hcl: {
      version: hcl.header.version,
      report_size: hcl.header.reportSize,
      request_type: hcl.header.requestType,
      status: hcl.header.status,
      runtime_data: {
        version: hcl.runtimeHeader.version,
        report_type: hcl.runtimeHeader.reportType,
        hash_type: hcl.hashType,
        size: hcl.runtimeHeader.runtimeDataSize,
        digest: hex(digest),
      },
    },
    snp,
    runtime_data: runtime,
    ...(runtimeError !== undefined && { runtime_data_error: runtimeError }),
    report_data_matches_runtime_data: snp.report_data === expected.toString('hex'),
    ...(attest !== undefined && { quote: describeTpmQuote(attest) }),
  };
}
