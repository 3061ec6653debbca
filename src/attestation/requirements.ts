/**
 * A policy's `attestation_requirements`, compiled: what verified evidence must show. Defined
 * here, with the evidence kinds, so that attestation depends on nothing of the policy's.
 */
import type { EvidenceType } from './kinds.js';

/** The TEE types a policy may name: the evidence kinds' names. */
export type TeeType = EvidenceType;

/** `attestation_requirements`, as users write them (snake_case in YAML). */
export interface AttestationRequirements {
  teeType?: TeeType;
  runtimeEnvironment?: string;
  /** `expected_mrenclave` or its alias `expected_measurement`; lower-case hex. */
  expectedMeasurements?: string[];
  minimumSecurityVersion?: number;
  /** Platform TCB components, e.g. { bootloader: 3, tee: 0, snp: 8, microcode: 115 }. */
  minimumTcb?: Record<string, number>;
  requireRuntimeDebugDisabled?: boolean;
  allowedChipIds?: string[];
  /** TPM: PCR index -> expected digest (hex). */
  pcrs?: Record<string, string>;
  /** `per_request`: every action of the agent needs fresh (nonce-bound) evidence; default session. */
  freshness?: 'session' | 'per_request';
  /** `freshness: { per_request: [...] }`: only these actions need fresh evidence (see needsFreshEvidence). */
  perRequestActions?: string[];
  /** Max age of evidence, seconds. */
  maxEvidenceAgeSeconds?: number;
  /** Name of a reference-values file/environment. */
  referenceValues?: string;
  /** Pinned TPM attestation keys (SHA-256 of the AK SPKI, hex): from reference values (anti-relay). */
  tpmAkSpkiSha256?: string[];
}
