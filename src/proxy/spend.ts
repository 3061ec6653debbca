/**
 * Budget enforcement shared by both proxy directions. A budgeted request is admitted only when
 * the ledger durably charges it (spent < limit, then spent += cost, atomically): an exhausted
 * agent gets 402 `{"error": "Budget exceeded"}`, and a ledger that cannot answer (Redis down, a
 * failed journal) refuses with 503: budgets fail closed. Agents without a budget never get here.
 */
import type { BudgetLedger } from '../budget/ledger.js';
import type { PolicyBudget } from '../budget/period.js';
import { SidecarError, errorMessage } from '../errors.js';
import type { AuditSink } from '../audit/record.js';
import type { Logger } from '../lib/log.js';
import { REASONS, refusal, refuse, type ReasonCode, type Refusal } from '../reasons.js';

/** A refused admission is the refusal itself (status, body, reason), marked `ok: false`. */
export type AdmissionRefusal = Refusal & { readonly ok: false };

export type Admission = { ok: true; key: string; chargedUsd: number } | AdmissionRefusal;

const refusedAdmission = (r: Refusal): AdmissionRefusal => Object.freeze({ ...r, ok: false as const });

const EXCEEDED = refusedAdmission(refusal('budget_exceeded'));

/** One frozen refusal per ledger failure code (a handful), built when first met. */
const LEDGER_FAILURES = new Map<ReasonCode, AdmissionRefusal>();

/**
 * 503 `Budget ledger unavailable` under the ledger's own code; a code the catalogue does not
 * answer that way (a bug below the ledger) is reported as `budget_ledger_failed`.
 */
function ledgerFailure(reason: ReasonCode): AdmissionRefusal {
  const message = REASONS.budget_ledger_failed.message;
  const spec: { status?: number; message: string } = REASONS[reason];
  const code = spec.status === 503 && spec.message === message ? reason : 'budget_ledger_failed';
  let refusal = LEDGER_FAILURES.get(code);
  if (refusal === undefined) LEDGER_FAILURES.set(code, (refusal = refusedAdmission(refuse(code, message))));
  return refusal;
}

/** The spend counters a spend gate feeds (OperationsMetrics has them). */
export interface SpendMetrics {
  spent(agent: string, source: 'action' | 'metered', usd: number): void;
  budgetRefused(agent: string, reason: string): void;
}

export class SpendGate {
  constructor(
    readonly ledger: BudgetLedger,
    private readonly operationsMetrics: SpendMetrics,
    private readonly audit: AuditSink,
    private readonly logger: Logger,
  ) {}

  /** Charges `amountUsd` to `agent` if its budget allows; never throws. */
  async admit(agent: string, budget: PolicyBudget, amountUsd: number, context: { peer?: string; route?: string; action?: string; direction: 'inbound' | 'outbound' }): Promise<Admission> {
    try {
      const charge = await this.ledger.charge(agent, budget, amountUsd);
      if (charge.ok) {
        // A fixed action cost is final; a metered reservation is counted when it settles.
        if (context.direction === 'inbound') this.operationsMetrics.spent(agent, 'action', amountUsd);
        return { ok: true, key: charge.key, chargedUsd: amountUsd };
      }
      this.refused(agent, EXCEEDED.reason, context, `spent ${charge.spentUsd} of ${charge.limitUsd} USD (${budget.period})`, charge.spentUsd, charge.limitUsd);
      return EXCEEDED;
    } catch (err) {
      const failure = ledgerFailure(err instanceof SidecarError ? err.reason : 'budget_ledger_failed');
      this.logger.error({ agent, reason: failure.reason, err: errorMessage(err) }, 'budget ledger unavailable: refusing budgeted request');
      this.refused(agent, failure.reason, context, errorMessage(err));
      return failure;
    }
  }

  /**
   * Replaces an up-front charge by the actual cost (metered responses); a failure is logged
   * and audited (the up-front charge stays, so the error costs the agent, never the operator).
   */
  settle(agent: string, budget: PolicyBudget, key: string, reservedUsd: number, actualUsd: number, route: string): void {
    this.operationsMetrics.spent(agent, 'metered', actualUsd);
    const deltaUsd = actualUsd - reservedUsd;
    if (deltaUsd === 0) return;
    this.ledger.adjust(agent, budget, deltaUsd, key).catch((err: unknown) => {
      this.logger.error({ agent, route, delta_usd: deltaUsd, err: errorMessage(err) }, 'budget adjustment failed; the reservation stays charged');
      this.audit.record({ type: 'budget', decision: 'error', reason: 'budget_adjust_failed', agent, route, amount_usd: deltaUsd, detail: errorMessage(err) });
    });
  }

  private refused(agent: string, reason: ReasonCode, context: { peer?: string; route?: string; action?: string; direction: string }, detail: string, spentUsd?: number, limitUsd?: number): void {
    this.operationsMetrics.budgetRefused(agent, reason);
    this.audit.record({
      type: 'budget',
      decision: 'deny',
      reason,
      agent,
      ...(context.peer ? { peer: context.peer } : {}),
      ...(context.route ? { route: context.route } : {}),
      ...(context.action ? { action: context.action } : {}),
      ...(spentUsd !== undefined ? { spent_usd: spentUsd } : {}),
      ...(limitUsd !== undefined ? { limit_usd: limitUsd } : {}),
      detail,
    });
  }
}
