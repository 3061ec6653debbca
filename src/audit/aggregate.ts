/**
 * Audit records for events an attacker can repeat at will (failed TLS handshakes, connections
 * over a cap, malformed requests): the first event of a kind is written at once, later ones of
 * the same kind are counted and written as one record per window with their count. A flood then
 * costs a few lines per window, never one per connection. Memory is bounded: kinds beyond
 * `maxKeys` in one window are folded into one overflow kind per record type.
 */
import type { AggregatedRecord, AuditSink } from './record.js';

export const AGGREGATE_WINDOW_MS = 10_000;
const MAX_KEYS = 256;
const OVERFLOW_REASON = 'aggregated_overflow';

interface Pending {
  type: AggregatedRecord['type'];
  reason: string;
  peer: string | undefined;
  /** Events since the last written record of this kind. */
  count: number;
  detail: string;
  remote: string | undefined;
}

export class AggregatedAudit {
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly audit: AuditSink,
    private readonly windowMs = AGGREGATE_WINDOW_MS,
    private readonly maxKeys = MAX_KEYS,
  ) {}

  /** One event; `peer` is the SPIFFE ID when known, `remote` the client address (first one kept). */
  note(type: AggregatedRecord['type'], reason: string, detail: string, peer?: string, remote?: string): void {
    let key = `${type}\0${reason}\0${peer ?? ''}`;
    let entry = this.pending.get(key);
    if (entry === undefined && this.pending.size >= this.maxKeys) {
      key = `${type}\0${OVERFLOW_REASON}`;
      entry = this.pending.get(key);
      if (entry === undefined) {
        entry = { type, reason: OVERFLOW_REASON, peer: undefined, count: 0, detail: 'events of several kinds (too many distinct kinds to list in this window)', remote: undefined };
        this.pending.set(key, entry);
      }
    }
    if (entry === undefined) {
      // First of its kind in this window: written now, so a single event is never delayed.
      this.write({ type, reason, peer, count: 1, detail, remote });
      this.pending.set(key, { type, reason, peer, count: 0, detail, remote: undefined });
      this.schedule();
      return;
    }
    entry.count++;
    entry.remote ??= remote;
  }

  /** Writes the counted events now (at shutdown, and at the end of every window). */
  flush(): void {
    for (const [key, e] of this.pending) {
      if (e.count === 0) {
        // A quiet window ends the kind: its next event is written at once again.
        this.pending.delete(key);
        continue;
      }
      this.write(e);
      e.count = 0;
      e.remote = undefined;
    }
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  close(): void {
    this.flush();
    this.pending.clear();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.flush(), this.windowMs);
    this.timer.unref();
  }

  private write(pending: Pending): void {
    const rec: AggregatedRecord = { type: pending.type, decision: 'deny', reason: pending.reason, detail: pending.detail, count: pending.count };
    if (pending.peer !== undefined) rec.peer = pending.peer;
    if (pending.remote !== undefined) rec.remote = pending.remote;
    this.audit.record(rec);
  }
}
