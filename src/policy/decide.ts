/**
 * The inbound access decision. Pure: no I/O, clock or logging; two hash lookups, plus a scan
 * of the agent's access_control entries when the mapping names a resource/permission.
 * Default deny, in this order:
 *   1. caller's SPIFFE ID bound to no agent          -> 403 unknown_agent
 *   2. request mapped to no action                   -> 403 no_action_mapped
 *   3. action not in the agent's allowed_actions     -> 403 action_not_permitted
 *   4. mapping names resource/permission and no access_control entry grants it to a peer
 *      holding the entry's claim (an extension of its SVID leaf) -> 403 permission_not_granted
 *   5. agent has attestation_requirements            -> 403 attestation_required
 *      (the inbound proxy then asks the attestation gate)
 *   6. allow
 */
import { holdsClaim } from './claims.js';
import type {
  AttestationClaims,
  AttestationRequirements,
  CompiledAgent,
  CompiledPolicy,
  Decision,
  DecisionRequest,
  DenyReason,
  PeerIdentity,
} from './types.js';

export type Denial = Extract<Decision, { allow: false }>;

/** Longest request path echoed back in an error (the rest is elided). */
const MAX_ECHOED_PATH = 256;

/** JSON bodies of the denials whose text never varies, computed once. */
const CONSTANT_BODIES = new Map<string, string>();

function constantDenial(status: number, error: string, reason: DenyReason): Denial {
  CONSTANT_BODIES.set(error, JSON.stringify({ error }));
  return Object.freeze({ allow: false, status, error, reason });
}

const NO_POLICY = constantDenial(503, 'No policy loaded', 'no_policy');
const UNKNOWN_AGENT = constantDenial(403, 'Unknown agent', 'unknown_agent');
constantDenial(403, 'Attestation required', 'attestation_required');

export function noPolicyDenial(): Denial {
  return NO_POLICY;
}

export function unknownAgentDenial(): Denial {
  return UNKNOWN_AGENT;
}

export function noActionMappedDenial(method: string, path: string, agent?: CompiledAgent): Denial {
  const shown = path.length > MAX_ECHOED_PATH ? `${path.slice(0, MAX_ECHOED_PATH)}...` : path;
  return deny(403, `No action mapped for ${method} ${shown}`, 'no_action_mapped', agent);
}

export function actionNotPermittedDenial(action: string, agent?: CompiledAgent): Denial {
  return deny(403, `Action '${action}' not permitted`, 'action_not_permitted', agent);
}

export function attestationRequiredDenial(agent?: CompiledAgent): Denial {
  return deny(403, 'Attestation required', 'attestation_required', agent);
}

export function permissionNotGrantedDenial(resource: string | undefined, permission: string | undefined, agent?: CompiledAgent): Denial {
  const error =
    resource === undefined
      ? `Permission '${permission}' not granted (the action mapping names no resource)`
      : permission === undefined
        ? `Access to resource '${resource}' not granted (the action mapping names no permission)`
        : `Permission '${permission}' on resource '${resource}' not granted`;
  return deny(403, error, 'permission_not_granted', agent);
}

function deny(status: number, error: string, reason: DenyReason, agent: CompiledAgent | undefined): Denial {
  return agent ? { allow: false, status, error, reason, agent } : { allow: false, status, error, reason };
}

/** The response body for a denial: `{"error":"..."}` (JSON-escaped). */
export function denialBody(decision: Denial): string {
  return CONSTANT_BODIES.get(decision.error) ?? JSON.stringify({ error: decision.error });
}

/** One frozen allow decision per agent: the allow path allocates nothing. */
const ALLOW = new WeakMap<CompiledAgent, Decision>();

function allowFor(agent: CompiledAgent): Decision {
  let d = ALLOW.get(agent);
  if (d === undefined) {
    d = Object.freeze({ allow: true as const, reason: 'allowed' as const, agent });
    ALLOW.set(agent, d);
  }
  return d;
}

export function decide(
  policy: CompiledPolicy | undefined,
  request: DecisionRequest,
  peer: PeerIdentity,
  // Verified attestation claims; consulted once the attestation verifier lands (issue 3).
  _claims?: AttestationClaims,
): Decision {
  if (policy === undefined) return NO_POLICY;
  const agent = policy.agentsBySpiffeId.get(peer.spiffeId);
  if (agent === undefined) return UNKNOWN_AGENT;
  const { action } = request;
  if (action === undefined) return noActionMappedDenial(request.method, request.path, agent);
  if (!agent.allowedActions.has(action)) return actionNotPermittedDenial(action, agent);
  const { resource, permission } = request;
  if ((resource !== undefined || permission !== undefined) && !granted(agent, resource, permission, peer)) {
    return permissionNotGrantedDenial(resource, permission, agent);
  }
  if (agent.attestation !== undefined) return attestationRequiredDenial(agent);
  return allowFor(agent);
}

/**
 * Whether an access_control entry of `agent` grants `permission` on `resource` to `peer`.
 * A mapping that names only one of the two is granted nothing (fail closed).
 */
function granted(agent: CompiledAgent, resource: string | undefined, permission: string | undefined, peer: PeerIdentity): boolean {
  if (resource === undefined || permission === undefined) return false;
  for (const e of agent.accessControl) {
    if (e.resource === resource && e.permission === permission && holdsClaim(e.claim, peer.extensions)) return true;
  }
  return false;
}

/**
 * Whether `action` needs fresh (nonce-bound) evidence under `reqs`: every action with
 * `freshness: per_request`, the listed ones with `freshness: { per_request: [...] }`.
 */
export function needsFreshEvidence(reqs: AttestationRequirements, action: string): boolean {
  return reqs.freshness === 'per_request' || (reqs.perRequestActions?.includes(action) ?? false);
}
