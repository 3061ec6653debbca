/**
 * Budget periods and ledger keys. A budget is spent per (agent, period instance): `total` never
 * resets, `daily` resets at 00:00 UTC, `monthly` on the 1st at 00:00 UTC. The key names the
 * instance (`<agent>:total`, `<agent>:2026-11-22`, `<agent>:2026-11`), so a new day simply starts
 * a new counter and old counters can expire on their own.
 */

export type BudgetPeriod = 'total' | 'daily' | 'monthly';

/** An agent's budget as its policy entry sets it. */
export interface PolicyBudget {
  limitUsd: number;
  /** When the spent amount resets; `total` never resets. */
  period: BudgetPeriod;
}

const DAY_MS = 86_400_000;

/** How long a daily / monthly counter is kept after its period starts (Redis TTL, file-store pruning). */
export const DAILY_RETENTION_MS = 40 * DAY_MS;
export const MONTHLY_RETENTION_MS = 400 * DAY_MS;

const DAY_ID = /^(\d{4})-(\d{2})-(\d{2})$/;
const MONTH_ID = /^(\d{4})-(\d{2})$/;

/** The current instance of `period`: `'total'`, `'2026-11-22'` (UTC day) or `'2026-11'` (UTC month). */
export function periodId(period: BudgetPeriod, nowMs: number): string {
  if (period === 'total') return 'total';
  const iso = new Date(nowMs).toISOString(); // throws RangeError for a non-finite clock
  return period === 'daily' ? iso.slice(0, 10) : iso.slice(0, 7);
}

/** When the current instance of `period` ends (ms since epoch); undefined for `total`. */
export function periodEndsAt(period: BudgetPeriod, nowMs: number): number | undefined {
  if (period === 'total') return undefined;
  const date = new Date(nowMs);
  return period === 'daily'
    ? Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1)
    : Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

/** The ledger key of `agent`'s budget for the period instance current at `nowMs`. */
export function budgetKey(agent: string, period: BudgetPeriod, nowMs: number): string {
  return `${agent}:${periodId(period, nowMs)}`;
}

/** Splits a ledger key at its last `:`; undefined when the suffix is not a period id. */
export function parseBudgetKey(key: string): { agent: string; periodId: string } | undefined {
  const i = key.lastIndexOf(':');
  if (i <= 0) return undefined;
  const id = key.slice(i + 1);
  if (id !== 'total' && !DAY_ID.test(id) && !MONTH_ID.test(id)) return undefined;
  return { agent: key.slice(0, i), periodId: id };
}

/**
 * When the counter behind `key` may be forgotten: 40 days after a daily period starts, 400 days
 * after a monthly one starts. Undefined (keep forever) for `total` and for keys that name no period.
 */
export function keyRetentionEndsAt(key: string): number | undefined {
  const parsed = parseBudgetKey(key);
  if (!parsed) return undefined;
  const day = DAY_ID.exec(parsed.periodId);
  if (day) return Date.UTC(+day[1], +day[2] - 1, +day[3]) + DAILY_RETENTION_MS;
  const month = MONTH_ID.exec(parsed.periodId);
  if (month) return Date.UTC(+month[1], +month[2] - 1, 1) + MONTHLY_RETENTION_MS;
  return undefined;
}

/** USD to integer micro-dollars (all ledger arithmetic is in integers: no float drift). */
export function usdToMicros(usd: number): number {
  return Math.round(usd * 1e6);
}

export function microsToUsd(micros: number): number {
  return micros / 1e6;
}
