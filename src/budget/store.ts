/**
 * The storage contract behind the budget ledger. Amounts are integer micro-dollars. Two
 * implementations: FileBudgetStore (fsync'd journal, one sidecar) and RedisBudgetStore (shared by
 * the replicas of an agent).
 *
 * "Concurrent requests overshoot by at most one request's cost" follows from the conditional
 * charge: admission is `spent < limit`, checked and incremented atomically, so the last admitted
 * request takes spent to at most `limit + its amount`.
 */
import { SidecarError } from '../errors.js';

export interface ChargeResult {
  ok: boolean;
  /** Spent after the charge (ok) or as found (refused). */
  spentMicros: number;
}

export interface BudgetStore {
  /**
   * Atomically: if spent(key) < limit then spent += amount (durably) and ok; else refused.
   * Resolves only after the charge is durable (journal fsync'd / Redis acknowledged).
   * Rejects with SidecarError (`budget_store_unavailable`, `budget_ledger_failed`) otherwise.
   */
  charge(key: string, amountMicros: number, limitMicros: number): Promise<ChargeResult>;
  /** Unconditional durable adjustment (e.g. metered actual minus the estimate charged up front; may be negative). */
  adjust(key: string, deltaMicros: number): Promise<{ spentMicros: number }>;
  /** Last known spent for key without I/O (for status pages and metrics; Redis: the last value seen). */
  peek(key: string): number | undefined;
  entries(): Iterable<[string, number]>;
  close(): Promise<void>;
}

/** Longest ledger key accepted (an agent name plus a period id); keeps journal lines bounded. */
export const MAX_KEY_LENGTH = 512;

/** Throws SidecarError('budget_invalid_argument') for a key or amount a store must not record. */
export function checkChargeArgs(key: string, micros: number, what: string, allowNegative: boolean): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new SidecarError('budget_invalid_argument', `budget key must be 1..${MAX_KEY_LENGTH} characters`);
  }
  if (!Number.isSafeInteger(micros) || (!allowNegative && micros < 0)) {
    throw new SidecarError(
      'budget_invalid_argument',
      `${what} must be ${allowNegative ? 'an' : 'a non-negative'} integer number of micro-dollars, got ${micros}`,
    );
  }
}
