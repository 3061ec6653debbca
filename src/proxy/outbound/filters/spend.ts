/**
 * The per-route filters of routes that hold a credential or meter usage. Each is in the chain
 * only when some route needs it, and continues at once for a route that does not.
 */
import { refusal } from '../../../reasons.js';
import type { PolicyBudget } from '../../../budget/period.js';
import type { RequestFilter } from '../../chain.js';
import type { SpendGate } from '../../spend.js';
import type { OutboundRequest } from '../context.js';

/** The route's credential headers; a secret file that became unusable refuses the request (fail closed). */
export const credentialsFilter: RequestFilter<OutboundRequest> = {
  name: 'credentials',
  onRequest(ctx) {
    const injector = ctx.route!.injector;
    if (injector === undefined) return undefined;
    ctx.auditPath = ctx.path;
    const unavailable = injector.check();
    if (unavailable !== undefined) return unavailable;
    ctx.injected = injector.headerPairs();
    return undefined;
  },
};

export interface MeteringDeps {
  /** The budget ledger's gate; absent: a metered route charging a budget is refused. */
  spend: SpendGate | undefined;
  /** Our agent and its budget (from the policy), if it has one. */
  ownBudget: ((ownId: string) => { agent: string; budget: PolicyBudget } | undefined) | undefined;
}

/**
 * A metered route's reservation is charged to our budget before the request leaves; the
 * response settles it with the metered cost (see the router). Asynchronous: the ledger answers.
 */
export function meteringFilter(deps: MeteringDeps): RequestFilter<OutboundRequest> {
  return {
    name: 'metering',
    onRequest(ctx) {
      const metering = ctx.route!.config.metering;
      if (metering === undefined) return undefined;
      ctx.auditPath = ctx.path;
      const own = deps.ownBudget?.(ctx.material!.ownId);
      if (own === undefined) return undefined;
      if (deps.spend === undefined) return refusal('budget_ledger_unavailable');
      return deps.spend.admit(own.agent, own.budget, metering.reserveUsd, { route: ctx.route!.config.name, direction: 'outbound' }).then((admission) => {
        if (!admission.ok) return admission;
        ctx.reservation = { agent: own.agent, budget: own.budget, key: admission.key };
        return undefined;
      });
    },
  };
}
