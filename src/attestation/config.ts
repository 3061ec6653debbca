/**
 * The `attestation:` section of a sidecar config, resolved: this sidecar's attester and the
 * trust its inbound gate verifies with. The kind-specific parts derive from the evidence kinds.
 */
import type { AttesterConfig, KindsVerifierConfig } from './kinds.js';

/** `attestation.verifier`: every kind's trust fields, the reference values and the verdict cache size. */
export type VerifierConfig = KindsVerifierConfig & {
  /** Reference values by environment name (policies refer to them by name). */
  referenceValues?: { files: Record<string, string>; signingKeys?: string; requireSignature: boolean };
  cacheSize: number;
};

/** `attestation:` — what this sidecar proves about itself, and what evidence it trusts. */
export interface AttestationConfig {
  /** Outbound: produce evidence bound to our SVID key. */
  attester?: AttesterConfig;
  /** Inbound: verify peers' evidence. */
  verifier?: VerifierConfig;
}
