/**
 * The inbound access decision. Pure: no I/O, clock or logging; O(1) (two hash lookups).
 * Default deny, in this order:
 *   1. caller's SPIFFE ID bound to no agent          -> 403 unknown_agent
 *   2. request mapped to no action                   -> 403 no_action_mapped
 *   3. action not in the agent's allowed_actions     -> 403 action_not_permitted
 *   4. agent has attestation_requirements            -> 403 attestation_required
 *      (fail closed until the attestation verifier checks `claims`)
 *   5. allow
 */
import type { AttestationClaims, CompiledAgent, CompiledPolicy, Decision, DecisionRequest, DenyReason, PeerIdentity } from './types.js';

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
  if (agent.attestation !== undefined) return attestationRequiredDenial(agent);
  return allowFor(agent);
}
