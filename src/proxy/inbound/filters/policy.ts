/**
 * Maps the request to its action and asks the policy. The route (mapping, decision, what the
 * request still owes) is remembered per connection while method, target and policy stay the
 * same: decide() is pure, so a hit is the same answer, and the warm path is three compares.
 *
 * An allowed request whose obligation nothing on this listener can meet is refused here, once
 * per route: attestation without a gate (403), a budget without a spend gate (503).
 */
import type { ActionMappingConfig } from '../../../policy/actions.js';
import { compileActionMatcher } from '../../../policy/actions.js';
import { decide } from '../../../policy/decide.js';
import type { CompiledPolicy } from '../../../policy/types.js';
import { refusal, type Refusal } from '../../../reasons.js';
import type { RequestFilter } from '../../chain.js';
import type { InboundContext, Route } from '../context.js';

const NO_POLICY = refusal('no_policy');
const NO_VERIFIER = refusal('attestation_unavailable');
const NO_LEDGER = refusal('budget_ledger_unavailable');

export interface PolicyFilterDeps {
  readonly policy: () => CompiledPolicy | undefined;
  readonly actions: readonly ActionMappingConfig[];
  /** An attestation gate is configured (an attestation filter follows). */
  readonly canAttest: boolean;
  /** A spend gate is configured (a budget filter follows). */
  readonly canCharge: boolean;
}

export function policyFilter(deps: PolicyFilterDeps): RequestFilter<InboundContext> {
  const match = compileActionMatcher(deps.actions);
  const currentPolicy = deps.policy;

  function routeOf(ctx: InboundContext, policy: CompiledPolicy): Route {
    const mapping = match(ctx.method, ctx.canonicalPath);
    const request = { method: ctx.method, path: ctx.canonicalPath, action: mapping?.action, resource: mapping?.resource, permission: mapping?.permission };
    const decision = decide(policy, request, ctx.conn!.identity);
    if (!decision.allow) return { mapping, decision, refusal: decision, attestation: undefined, budget: undefined };
    const attestation = decision.obligations?.attestation;
    const budget = decision.obligations?.budget;
    let unmet: Refusal | undefined;
    if (attestation !== undefined && !deps.canAttest) unmet = NO_VERIFIER;
    else if (budget !== undefined && !deps.canCharge) unmet = NO_LEDGER;
    return { mapping, decision, refusal: unmet, attestation, budget };
  }

  return {
    name: 'policy',
    onRequest(ctx) {
      const conn = ctx.conn!;
      const policy = currentPolicy();
      let route: Route;
      if (conn.lastUrl === ctx.url && conn.lastMethod === ctx.method && conn.lastPolicy === policy && policy !== undefined) {
        route = conn.lastRoute!;
      } else {
        if (policy === undefined) return NO_POLICY;
        route = routeOf(ctx, policy);
        conn.lastUrl = ctx.url;
        conn.lastMethod = ctx.method;
        conn.lastPolicy = policy;
        conn.lastRoute = route;
      }
      ctx.policy = policy;
      ctx.route = route;
      ctx.action = route.mapping?.action;
      return route.refusal;
    },
  };
}
