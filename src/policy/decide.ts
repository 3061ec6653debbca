/**
 * The inbound access decision. Pure: no I/O, clock or logging; two hash lookups, plus a scan
 * of the agent's access_control entries when the mapping names a resource/permission.
 * Default deny, in this order:
 *   1. caller's SPIFFE ID bound to no agent          -> 403 unknown_agent
 *   2. request mapped to no action                   -> 403 no_action_mapped
 *   3. action not in the agent's allowed_actions     -> 403 action_not_permitted
 *   4. mapping names resource/permission and no access_control entry grants it to a peer
 *      holding the entry's claim (an extension of its SVID leaf) -> 403 permission_not_granted
 *   5. allow, with the agent's obligations: its attestation requirements (the inbound
 *      attestation gate checks the peer's evidence) and its budget (charged before forwarding)
 */
import { refusal, refuse } from '../reasons.js';
import { holdsClaim } from './claims.js';
import type { PolicyAgent } from './read-agent.js';
import type { Allow, CompiledAgent, CompiledPolicy, Decision, DecisionRequest, Denial, DenyReason, Obligations, PeerIdentity } from './types.js';
import type { AttestationRequirements } from '../attestation/requirements.js';

/** Longest request path echoed back in an error (the rest is elided). */
const MAX_ECHOED_PATH = 256;

const NO_POLICY: Denial = Object.freeze({ ...refusal('no_policy'), allow: false as const, reason: 'no_policy' as const });
const UNKNOWN_AGENT: Denial = Object.freeze({ ...refusal('unknown_agent'), allow: false as const, reason: 'unknown_agent' as const });

export function unknownAgentDenial(): Denial {
  return UNKNOWN_AGENT;
}

export function noActionMappedDenial(method: string, path: string, agent?: CompiledAgent): Denial {
  const shown = path.length > MAX_ECHOED_PATH ? `${path.slice(0, MAX_ECHOED_PATH)}...` : path;
  return deny('no_action_mapped', `No action mapped for ${method} ${shown}`, agent);
}

export function actionNotPermittedDenial(action: string, agent?: CompiledAgent): Denial {
  return deny('action_not_permitted', `Action '${action}' not permitted`, agent);
}

export function permissionNotGrantedDenial(resource: string | undefined, permission: string | undefined, agent?: CompiledAgent): Denial {
  const error =
    resource === undefined
      ? `Permission '${permission}' not granted (the action mapping names no resource)`
      : permission === undefined
        ? `Access to resource '${resource}' not granted (the action mapping names no permission)`
        : `Permission '${permission}' on resource '${resource}' not granted`;
  return deny('permission_not_granted', error, agent);
}

function deny(reason: DenyReason, error: string, agent: CompiledAgent | undefined): Denial {
  const refused = refuse(reason, error);
  return Object.freeze(agent ? { ...refused, allow: false as const, reason, agent } : { ...refused, allow: false as const, reason });
}

/** The response body for a denial: `{"error":"..."}` (JSON-escaped, computed with the denial). */
export function denialBody(decision: Denial): string {
  return decision.body;
}

/** One frozen allow decision per agent: the allow path allocates nothing. */
const ALLOW = new WeakMap<CompiledAgent, Allow>();

function allowFor(agent: CompiledAgent): Allow {
  let cached = ALLOW.get(agent);
  if (cached === undefined) {
    cached = Object.freeze({ allow: true as const, reason: 'allowed' as const, agent, obligations: obligationsOf(agent) });
    ALLOW.set(agent, cached);
  }
  return cached;
}

function obligationsOf(agent: CompiledAgent): Obligations | undefined {
  const attestation = agent.attestation;
  const budget = (agent as PolicyAgent).budget;
  if (attestation === undefined && budget === undefined) return undefined;
  return Object.freeze({ ...(attestation !== undefined ? { attestation } : {}), ...(budget !== undefined ? { budget } : {}) });
}

export function decide(policy: CompiledPolicy | undefined, request: DecisionRequest, peer: PeerIdentity): Decision {
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
 * Whether `action` needs fresh (nonce-bound) evidence under `requirements`: every action with
 * `freshness: per_request`, the listed ones with `freshness: { per_request: [...] }`.
 */
export function needsFreshEvidence(requirements: AttestationRequirements, action: string): boolean {
  return requirements.freshness === 'per_request' || (requirements.perRequestActions?.includes(action) ?? false);
}
