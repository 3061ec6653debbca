/**
 * The budget ledger the proxies call: turns an agent's policy budget and a request's price into a
 * conditional charge on the store, keyed by the current period instance (`<agent>:<period id>`).
 *
 * A request is admitted while spent < limit, so an exhausted agent is refused everything budgeted,
 * even unpriced (0) actions, and concurrent requests overshoot the limit by at most one request's
 * cost. Store failures reject with SidecarError (`budget_store_unavailable`, `budget_ledger_failed`):
 * callers deny with 503 (fail closed), they never admit on error.
 */
import { SidecarError, errorMessage } from '../errors.js';
import { budgetKey, microsToUsd, parseBudgetKey, periodEndsAt, periodId, usdToMicros, type PolicyBudget } from './period.js';
import type { BudgetStore } from './store.js';

export type BudgetCharge =
  | { ok: true; key: string; spentUsd: number; limitUsd: number }
  | { ok: false; reason: 'budget_exceeded'; key: string; spentUsd: number; limitUsd: number };

/** One row of the budget status (admin page, metrics). */
export interface BudgetStatus {
  agent: string;
  period: PolicyBudget['period'];
  period_id: string;
  spent_usd: number;
  limit_usd: number;
  /** When the current period ends (ISO 8601), null for `total`. */
  resets_at: string | null;
}

export class BudgetLedger {
  readonly store: BudgetStore;
  private readonly now: () => number;

  constructor(store: BudgetStore, now: () => number = Date.now) {
    this.store = store;
    this.now = now;
  }

  /**
   * Charges `amountUsd` (the request's price, or an up-front estimate; 0 for unpriced actions)
   * to `agent`'s current period if it has budget left. Resolves once the charge is durable.
   */
  async charge(agent: string, budget: PolicyBudget, amountUsd: number): Promise<BudgetCharge> {
    checkAgent(agent);
    const limitMicros = checkUsd(budget.limitUsd, 'budget limit', false);
    const amountMicros = checkUsd(amountUsd, 'amount', false);
    const key = budgetKey(agent, budget.period, this.now());
    const res = await storeCall(() => this.store.charge(key, amountMicros, limitMicros));
    const spentUsd = microsToUsd(res.spentMicros);
    return res.ok
      ? { ok: true, key, spentUsd, limitUsd: budget.limitUsd }
      : { ok: false, reason: 'budget_exceeded', key, spentUsd, limitUsd: budget.limitUsd };
  }

  /**
   * Unconditional correction, e.g. metered actual cost minus the estimate charged up front (may be
   * negative). Pass the `key` of the original charge so a period boundary in between does not move
   * the correction to the next period.
   */
  async adjust(agent: string, budget: PolicyBudget, deltaUsd: number, key?: string): Promise<{ key: string; spentUsd: number }> {
    checkAgent(agent);
    const deltaMicros = checkUsd(deltaUsd, 'delta', true);
    if (key !== undefined && parseBudgetKey(key)?.agent !== agent) {
      throw new SidecarError('budget_invalid_argument', `budget key ${JSON.stringify(key)} does not belong to agent ${JSON.stringify(agent)}`);
    }
    const k = key ?? budgetKey(agent, budget.period, this.now());
    const res = await storeCall(() => this.store.adjust(k, deltaMicros));
    return { key: k, spentUsd: microsToUsd(res.spentMicros) };
  }

  /** Current period's spend of each budgeted agent, from what the store last saw (no I/O). */
  snapshot(agents: readonly { name: string; budget?: PolicyBudget | undefined }[]): BudgetStatus[] {
    const now = this.now();
    const rows: BudgetStatus[] = [];
    for (const { name, budget } of agents) {
      if (!budget) continue;
      const ends = periodEndsAt(budget.period, now);
      rows.push({
        agent: name,
        period: budget.period,
        period_id: periodId(budget.period, now),
        spent_usd: microsToUsd(this.store.peek(budgetKey(name, budget.period, now)) ?? 0),
        limit_usd: budget.limitUsd,
        resets_at: ends === undefined ? null : new Date(ends).toISOString(),
      });
    }
    return rows;
  }
}

function checkAgent(agent: string): void {
  if (typeof agent !== 'string' || agent.length === 0) throw new SidecarError('budget_invalid_argument', 'agent name is empty');
}

function checkUsd(usd: number, what: string, allowNegative: boolean): number {
  const micros = typeof usd === 'number' && Number.isFinite(usd) ? usdToMicros(usd) : NaN;
  if (!Number.isSafeInteger(micros) || (!allowNegative && micros < 0)) {
    throw new SidecarError('budget_invalid_argument', `${what} must be a finite${allowNegative ? '' : ', non-negative'} USD amount, got ${usd}`);
  }
  return micros;
}

/** Store errors reach callers as SidecarErrors with a reason (503 material), never as raw errors. */
async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw new SidecarError('budget_ledger_failed', `budget store failed: ${errorMessage(err)}`, { cause: err });
  }
}
