/**
 * Budgeted agents: the action's cost is charged durably before the request is forwarded (402
 * when the budget is spent, 503 when the ledger cannot answer). Absent when no spend gate is
 * configured (the policy filter refuses budgeted agents then).
 */
import type { RevocationState } from '../../../revocation/state.js';
import { refusal } from '../../../reasons.js';
import type { RequestFilter, FilterOutcome } from '../../chain.js';
import type { SpendGate } from '../../spend.js';
import type { InboundContext } from '../context.js';

const REVOKED = refusal('agent_revoked');

export function budgetFilter(spend: SpendGate, revocations: (() => RevocationState) | undefined): RequestFilter<InboundContext> {
  async function charge(ctx: InboundContext): Promise<FilterOutcome> {
    const route = ctx.route!;
    const mapping = route.mapping!;
    const peer = ctx.peer;
    const agent = route.decision.allow ? route.decision.agent.name : '';
    const admission = await spend.admit(agent, route.budget!, mapping.costUsd ?? 0, { peer: peer.id, action: mapping.action, direction: 'inbound' });
    if (!admission.ok) return admission;
    // A revocation that landed while the charge was being made still wins.
    if (revocations?.().isRevoked(peer.id) || ctx.socket.destroyed) return REVOKED;
    return undefined;
  }

  return {
    name: 'budget',
    onRequest: (ctx) => (ctx.route!.budget === undefined ? undefined : charge(ctx)),
  };
}
