/**
 * The audit record shape and the sink interface every decision path writes to. One interface
 * for every kind of record so callers build plain object literals (no per-kind classes on the
 * hot path); the optional fields are used by the kinds named beside them.
 */

export type AuditRecordType =
  | 'inbound_decision'
  | 'outbound_decision'
  | 'peer_rejected'
  /** A listener refused or closed client connections (caps, timeouts, malformed requests); aggregated. */
  | 'connection_refused'
  | 'revocation'
  | 'budget'
  | 'admin_action'
  | 'admin_auth_failed'
  /** Written by the sink itself when it starts a chain after a non-chained last line. */
  | 'audit_chain_start'
  /** Written by the sink itself when it dropped a torn (unterminated) last line at start. */
  | 'audit_tail_repaired';

/** One audit record: what was decided, for whom, and why (reason codes match metrics). */
export interface AuditRecord {
  type: AuditRecordType;
  decision: 'allow' | 'deny' | 'error';
  reason: string;
  peer?: string;
  method?: string;
  path?: string;
  action?: string;
  route?: string;
  status?: number;
  latency_ms?: number;
  /** inbound_decision, outbound_decision: the request's `x-request-id` (the caller's, or generated). */
  request_id?: string;
  detail?: string;
  /** revocation, budget: the agent concerned. */
  agent?: string;
  /** budget: the amount asked for, spent so far and the limit, in USD. */
  amount_usd?: number;
  spent_usd?: number;
  limit_usd?: number;
  /** admin_action, admin_auth_failed: who acted, on what, from where. */
  principal?: string;
  target?: string;
  remote?: string;
  /** Aggregated records (peer_rejected at the TLS layer, connection_refused): events in the window. */
  count?: number;
}

export interface AuditSink {
  /** Sinks may keep `rec` until it is written: callers pass a record they no longer change. */
  record(rec: AuditRecord): void;
  flush(): Promise<void>;
}

/** Collects records in memory; for tests and for sidecars that disable auditing. */
export class MemoryAuditSink implements AuditSink {
  readonly records: AuditRecord[] = [];
  record(rec: AuditRecord): void {
    this.records.push(rec);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
