/**
 * Revocation enforcement: when the revocation list changes (an admin kill, a kill-all, a shared
 * list reload), the change takes effect on what is already open, not only on what comes next.
 * Inbound connections of revoked peers are closed, the outbound proxy re-checks whether we
 * ourselves are revoked, and the change is counted, audited and logged.
 */
import type { AuditSink } from '../audit/record.js';
import type { Logger } from '../lib/log.js';
import type { SidecarError } from '../errors.js';
import type { RevocationState } from './state.js';

/** The counters enforcement moves (OperationsMetrics has them). */
export interface RevocationMetrics {
  revokedConnectionsClosed(n: number): void;
  revocationChange(action: string): void;
}

export interface RevocationEnforcementDeps {
  /** Closes open connections whose peer `state` revokes; returns how many. */
  inbound?: { closeRevoked(state: RevocationState): number } | undefined;
  /** Stops or resumes outbound traffic when our own ID is revoked or restored. */
  outbound?: { onRevocationChange(): void } | undefined;
  metrics: RevocationMetrics;
  audit: AuditSink;
  logger: Pick<Logger, 'warn' | 'error'>;
}

/** What a store must offer to be enforced (RevocationStore does). */
export interface RevocationEvents {
  on(event: 'change', listener: (state: RevocationState, revokedNow: readonly string[]) => void): unknown;
  on(event: 'error', listener: (err: SidecarError) => void): unknown;
}

/** Applies every change `store` reports for as long as it lives; list problems are logged. */
export function enforceRevocations(store: RevocationEvents, deps: RevocationEnforcementDeps): void {
  store.on('change', (state, revokedNow) => applyRevocations(state, revokedNow, deps));
  store.on('error', (err) => deps.logger.error({ err: err.message, reason: err.reason }, 'revocation list problem'));
}

/** One change: close what the new state revokes, tell outbound, count, audit, log. */
export function applyRevocations(state: RevocationState, revokedNow: readonly string[], deps: RevocationEnforcementDeps): void {
  const closed = deps.inbound?.closeRevoked(state) ?? 0;
  deps.metrics.revokedConnectionsClosed(closed);
  deps.outbound?.onRevocationChange();
  const revoked = revokedNow.length > 0;
  deps.metrics.revocationChange(revoked ? 'revoke' : 'update');
  deps.audit.record({
    type: 'revocation',
    decision: revoked ? 'deny' : 'allow',
    reason: revoked ? 'revoked' : 'revocations_changed',
    ...(revoked ? { target: revokedNow.join(' ') } : {}),
    detail: `${state.size} revoked${state.all ? ', kill-all in force' : ''}; ${closed} open connection(s) closed`,
  });
  deps.logger.warn({ revoked_now: revokedNow, kill_all: state.all !== undefined, total: state.size, connections_closed: closed }, 'revocations changed');
}

/** Revoked IDs by source and whether a kill-all is in force: the revocation gauges. */
export function revocationCounts(state: RevocationState): { local: number; shared: number; all: boolean } {
  let shared = 0;
  for (const entry of state.byId.values()) if (entry.source === 'shared') shared++;
  return { local: state.size - shared, shared, all: state.all !== undefined };
}
