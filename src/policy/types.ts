/**
 * Policy model. YAML is compiled once (src/policy/compile.ts) into a CompiledPolicy;
 * `decide()` (src/policy/decide.ts) is a pure function over it.
 */
import type { Refusal } from '../reasons.js';
import type { PolicyBudget } from '../budget/period.js';

/** `attestation_requirements` are defined with the evidence kinds they name. */
import type { AttestationRequirements } from '../attestation/requirements.js';

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
  /** SPIFFE IDs allowed to use the admin API over mTLS. */
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

/** Why decide() refused. */
export type DenyReason = 'unknown_agent' | 'action_not_permitted' | 'no_action_mapped' | 'permission_not_granted' | 'no_policy';

/**
 * What an allowed request must still satisfy before it reaches the app: evidence meeting the
 * agent's attestation requirements, and a durable charge to its budget. Absent: none apply.
 */
export interface Obligations {
  readonly attestation?: AttestationRequirements;
  readonly budget?: PolicyBudget;
}

/** One frozen object per agent (the allow path allocates nothing). */
export interface Allow {
  readonly allow: true;
  readonly reason: 'allowed';
  readonly agent: CompiledAgent;
  readonly obligations: Obligations | undefined;
}

/** A refusal (status, message, JSON body) together with the agent it concerns, when known. */
export interface Denial extends Refusal {
  readonly allow: false;
  readonly reason: DenyReason;
  readonly agent?: CompiledAgent;
}

export type Decision = Allow | Denial;
