/**
 * Policy model. YAML is compiled once (src/policy/compile.ts) into a CompiledPolicy;
 * `decide()` (src/policy/decide.ts) is a pure function over it.
 */

/** `attestation_requirements` are defined with the evidence kinds they name. */
import type { AttestationRequirements } from '../attestation/requirements.js';
export type { AttestationRequirements, TeeType } from '../attestation/requirements.js';

export interface AccessControlEntry {
  /** e.g. `oid:1.2.3.4.5` or `oid:1.2.3.4.5=value`, as written. */
  principalAttestationClaim: string;
  resource: string;
  permission: string;
  /** The claim, parsed once at compile time. */
  claim: ParsedClaim;
}

/** `oid:OID[=value]`: the peer's SVID leaf carries extension OID (whose value equals `value`). */
export interface ParsedClaim {
  oid: string;
  value?: string;
  /** `value` in lower case when it is even-length hex: compared with non-string extension values. */
  valueHex?: string;
}

/** One X.509 extension of the peer's SVID leaf (src/spiffe/extensions.ts). */
export interface PeerExtension {
  /** Decoded text when the value is a DER UTF8String / IA5String / PrintableString. */
  readonly text?: string;
  /** Lower-case hex of the raw extnValue octets. */
  readonly hex: string;
}

export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

export interface CompiledAgent {
  name: string;
  spiffeIds: readonly string[];
  allowedActions: ReadonlySet<string>;
  attestation?: AttestationRequirements;
  accessControl: readonly AccessControlEntry[];
  /** Where the agent was declared, for messages. */
  position?: SourcePosition;
}

export interface CompiledPolicy {
  /** Content hash (sha256 hex, first 16 chars) of the source: changes whenever the policy changes. */
  version: string;
  file: string;
  /** SPIFFE ID string -> agent. Exact-match lookups only. */
  agentsBySpiffeId: ReadonlyMap<string, CompiledAgent>;
  agents: readonly CompiledAgent[];
  /** SPIFFE IDs allowed to use the admin API over mTLS (issue 4). */
  admins: ReadonlySet<string>;
  loadedAt: Date;
}

export interface DecisionRequest {
  method: string;
  path: string;
  /** The action the inbound mapping named, or undefined when nothing matched. */
  action: string | undefined;
  resource?: string;
  permission?: string;
}

export interface PeerIdentity {
  spiffeId: string;
  /** Extensions of the peer's SVID leaf by OID (for `access_control` claims); absent: none held. */
  extensions?: ReadonlyMap<string, PeerExtension>;
}

/** Verified attestation claims of the peer (issue 3); undefined when none were presented. */
export type AttestationClaims = Readonly<Record<string, unknown>>;

export type DenyReason =
  | 'unknown_agent'
  | 'action_not_permitted'
  | 'no_action_mapped'
  | 'permission_not_granted'
  | 'attestation_required'
  | 'no_policy';

export type Decision =
  | { readonly allow: true; readonly reason: 'allowed'; readonly agent: CompiledAgent }
  | {
      readonly allow: false;
      readonly status: number;
      /** JSON error text for the caller, e.g. "Action 'x' not permitted". */
      readonly error: string;
      readonly reason: DenyReason;
      readonly agent?: CompiledAgent;
    };
