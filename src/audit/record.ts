/**
 * The audit record shapes and the sink interface every decision path writes to. A record is a
 * union on `type`: each kind carries exactly its own fields, so a caller cannot write a field
 * its kind does not have. Callers still build plain object literals (no per-kind classes on
 * the hot path); the formatter writes whichever fields are set, in one fixed order.
 */

export type AuditDecision = 'allow' | 'deny' | 'error';

/** inbound_decision, outbound_decision: one per request a listener answered. */
export interface RequestDecisionRecord {
  type: 'inbound_decision' | 'outbound_decision';
  decision: AuditDecision;
  reason: string;
  peer?: string;
  method?: string;
  path?: string;
  action?: string;
  route?: string;
  status?: number;
  latency_ms?: number;
  /** The request's `x-request-id` (the caller's, or generated). */
  request_id?: string;
}

/**
 * A TLS peer refused at or right after its handshake. Aggregated at the TLS layer (`count`
 * events in the window); a peer refused after verification is written singly.
 */
export interface PeerRejectedRecord {
  type: 'peer_rejected';
  decision: 'deny';
  reason: string;
  peer?: string;
  detail: string;
  remote?: string;
  count?: number;
}

/** A listener refused or closed client connections (caps, timeouts, malformed requests); aggregated. */
export interface ConnectionRefusedRecord {
  type: 'connection_refused';
  decision: 'deny';
  reason: string;
  peer?: string;
  detail: string;
  remote?: string;
  count: number;
}

/** The revocation state changed (kill switch, restore, shared list). */
export interface RevocationRecord {
  type: 'revocation';
  decision: AuditDecision;
  reason: string;
  /** The SPIFFE IDs revoked by this change, space-separated. */
  target?: string;
  detail: string;
}

/** A budget refused a request, or its ledger failed. */
export interface BudgetRecord {
  type: 'budget';
  decision: AuditDecision;
  reason: string;
  /** The agent whose budget it is. */
  agent: string;
  peer?: string;
  action?: string;
  route?: string;
  /** The amount asked for (or adjusted by), spent so far and the limit, in USD. */
  amount_usd?: number;
  spent_usd?: number;
  limit_usd?: number;
  detail: string;
}

/** An authenticated admin mutation: who acted, on what, from where. */
export interface AdminActionRecord {
  type: 'admin_action';
  decision: AuditDecision;
  reason: string;
  action: string;
  principal: string;
  target?: string;
  detail?: string;
  remote?: string;
}

/** An admin request that failed authentication (or came from a browser). */
export interface AdminAuthFailedRecord {
  type: 'admin_auth_failed';
  decision: 'deny';
  reason: string;
  peer?: string;
  action: string;
  remote?: string;
}

/** Written by the sink itself: a chain starts (new file, or after a non-chained last line). */
export interface AuditChainStartRecord {
  type: 'audit_chain_start';
  decision: 'allow';
  reason: string;
  detail: string;
}

/** Written by the sink itself when it dropped a torn (unterminated) last line at start. */
export interface AuditTailRepairedRecord {
  type: 'audit_tail_repaired';
  decision: 'error';
  reason: string;
  detail: string;
}

/** SIGHUP reloaded one part (policy, credentials, revocation lists, reference values, file identity). */
export interface ReloadRecord {
  type: 'reload';
  /** allow: applied or unchanged; error: rejected, the previous state stays. */
  decision: 'allow' | 'error';
  /** `reloaded`, `reload_unchanged`, or the part's own config reason (e.g. `policy_invalid`). */
  reason: string;
  /** The part: policy, credentials, revocations, reference_values, identity_files. */
  target: string;
  detail: string;
}

/** One audit record: what was decided, for whom, and why (reason codes match metrics). */
export type AuditRecord =
  | RequestDecisionRecord
  | PeerRejectedRecord
  | ConnectionRefusedRecord
  | RevocationRecord
  | BudgetRecord
  | AdminActionRecord
  | AdminAuthFailedRecord
  | AuditChainStartRecord
  | AuditTailRepairedRecord
  | ReloadRecord;

/** The kinds AggregatedAudit counts per window. */
export type AggregatedRecord = PeerRejectedRecord | ConnectionRefusedRecord;

type KeysOfUnion<T> = T extends unknown ? keyof T : never;
type FieldOf<T, K extends PropertyKey> = T extends unknown ? (K extends keyof T ? T[K] : never) : never;

/**
 * Every field of every record kind, optional beyond the three all kinds share: the formatter's
 * view of a record (it writes the fields that are set).
 */
export type AuditFields = Pick<AuditRecord, 'type' | 'decision' | 'reason'> & {
  [K in Exclude<KeysOfUnion<AuditRecord>, 'type' | 'decision' | 'reason'>]?: FieldOf<AuditRecord, K>;
};

export interface AuditSink {
  /** Sinks may keep `rec` until it is written: callers pass a record they no longer change. */
  record(rec: AuditRecord): void;
  flush(): Promise<void>;
}

/**
 * Collects records in memory; for tests and for sidecars that disable auditing. The records are
 * read back through the flat view (any field of any kind), as a test asserts on them.
 */
export class MemoryAuditSink implements AuditSink {
  readonly records: AuditFields[] = [];
  record(rec: AuditRecord): void {
    this.records.push(rec);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
