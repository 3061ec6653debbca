/**
 * Appraisal: verified claims against a policy's `attestation_requirements`. Pure and cheap;
 * runs once per (peer key, evidence, policy version), never per request.
 *
 * Verifiers emit type-specific claims; `NormalizedClaims` is the common view appraisal reads.
 * Anything a requirement needs but the evidence does not report fails closed.
 */
import type { AttestationRequirements } from './requirements.js';
import { AttestationError } from './types.js';
import { type EvidenceType } from './kinds.js';

export interface NormalizedClaims {
  evidence_type: EvidenceType;
  /** The TEE behind the evidence: az-snp-vtpm evidence comes from an sev-snp TEE. */
  tee_type: string;
  runtime_environment?: string;
  measurement?: string;
  guest_svn?: number;
  debug?: boolean;
  /** Platform TCB components (the SNP REPORTED_TCB; the sim report's TCB). */
  tcb?: Readonly<Record<string, number>>;
  chip_id?: string;
  pcrs?: Readonly<Record<string, string>>;
  /** When the evidence says it was produced (sim), if it says so. */
  issued_at?: string;
  /** TPM evidence: SHA-256 of the AK's SPKI (hex). */
  tpm_ak_spki_sha256?: string;
}

/** A record's own entry only: requirement names never reach Object.prototype ('constructor', '__proto__'). */
function ownValue<T>(record: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined;
}

const fail = (reason: ConstructorParameters<typeof AttestationError>[0], message: string): never => {
  throw new AttestationError(reason, message);
};

export function appraise(claims: NormalizedClaims, req: AttestationRequirements, now: Date): void {
  // The software TEE proves nothing about hardware: only a policy that asks for it gets it.
  if (claims.evidence_type === 'sim' && req.teeType !== 'sim') {
    fail('policy_mismatch', 'sim (software) evidence is accepted only by policies that name tee_type: sim');
  }
  if (req.teeType !== undefined && req.teeType !== claims.tee_type && req.teeType !== claims.evidence_type) {
    fail('policy_mismatch', `TEE type ${claims.evidence_type} does not satisfy required tee_type ${req.teeType}`);
  }
  if (req.runtimeEnvironment !== undefined && req.runtimeEnvironment !== claims.runtime_environment) {
    fail('policy_mismatch', `runtime environment ${claims.runtime_environment ?? '(none)'} is not ${req.runtimeEnvironment}`);
  }
  if (req.expectedMeasurements !== undefined) {
    const m = claims.measurement?.toLowerCase();
    if (m === undefined) fail('measurement_mismatch', 'the evidence reports no launch measurement');
    if (!req.expectedMeasurements.includes(m!)) fail('measurement_mismatch', `measurement ${m} is not an expected value`);
  }
  if (req.minimumSecurityVersion !== undefined) {
    if (claims.guest_svn === undefined) fail('svn_too_low', 'the evidence reports no security version');
    if (claims.guest_svn! < req.minimumSecurityVersion) {
      fail('svn_too_low', `security version ${claims.guest_svn} is below the minimum ${req.minimumSecurityVersion}`);
    }
  }
  if (req.minimumTcb !== undefined) {
    for (const [component, min] of Object.entries(req.minimumTcb)) {
      const have = ownValue(claims.tcb, component);
      if (have === undefined) fail('tcb_too_low', `the evidence reports no TCB component '${component}'`);
      if (have! < min) fail('tcb_too_low', `TCB ${component} ${have} is below the minimum ${min}`);
    }
  }
  if (req.requireRuntimeDebugDisabled === true && claims.debug !== false) {
    fail('debug_enabled', claims.debug === undefined ? 'the evidence does not report the debug state' : 'the guest runs with debug enabled');
  }
  if (req.allowedChipIds !== undefined) {
    const chip = claims.chip_id?.toLowerCase();
    // Exact match on the CHIP_ID the (verified) report carries; no prefix matching.
    if (chip === undefined || !req.allowedChipIds.includes(chip)) fail('chip_not_allowed', `chip ${chip ?? '(none)'} is not in allowed_chip_ids`);
  }
  if (req.pcrs !== undefined) {
    for (const [index, digest] of Object.entries(req.pcrs)) {
      const have = ownValue(claims.pcrs, index);
      if (have === undefined) fail('pcr_mismatch', `PCR ${index} is not in the quote`);
      if (have!.toLowerCase() !== digest.toLowerCase()) fail('pcr_mismatch', `PCR ${index} is ${have}, expected ${digest}`);
    }
  }
  if (req.tpmAkSpkiSha256 !== undefined) {
    const ak = claims.tpm_ak_spki_sha256;
    if (ak === undefined || !req.tpmAkSpkiSha256.includes(ak)) fail('ak_not_allowed', `TPM attestation key ${ak ?? '(none)'} is not pinned`);
  }
  if (req.maxEvidenceAgeSeconds !== undefined && claims.issued_at !== undefined) {
    const age = (now.getTime() - Date.parse(claims.issued_at)) / 1000;
    if (age > req.maxEvidenceAgeSeconds) fail('evidence_stale', `evidence is ${Math.round(age)} s old, over ${req.maxEvidenceAgeSeconds} s`);
  }
}
