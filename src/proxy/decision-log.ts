/**
 * One place where a finished request is counted and audited, so the metric label and the
 * audit record always carry the same reason code.
 */
import type { AuditSink, RequestDecisionRecord } from '../audit/record.js';

/** Which listener decided. */
export type Direction = 'inbound' | 'outbound';

/** The request counter and latency histogram a decision log feeds (SidecarMetrics has it). */
export interface DecisionMetrics {
  request(direction: Direction, decision: 'allow' | 'deny' | 'error', reason: string, seconds: number): void;
}

/** One refused request as the status page shows it. */
export interface RecentDenial {
  time: string;
  direction: Direction;
  peer?: string;
  route?: string;
  method?: string;
  path?: string;
  action?: string;
  reason: string;
  status?: number;
}

/** The last N denials (ring buffer): only the deny path pays for it. */
export class RecentDenials {
  private readonly ring: (RecentDenial | undefined)[];
  private next = 0;

  constructor(readonly capacity = 50) {
    this.ring = new Array<RecentDenial | undefined>(capacity);
  }

  push(denial: RecentDenial): void {
    this.ring[this.next] = denial;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first. */
  list(): RecentDenial[] {
    const out: RecentDenial[] = [];
    for (let i = 1; i <= this.capacity; i++) {
      const denial = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (denial) out.push(denial);
    }
    return out;
  }
}

export class DecisionLog {
  private readonly type: RequestDecisionRecord['type'];

  constructor(
    private readonly direction: Direction,
    private readonly metrics: DecisionMetrics,
    private readonly audit: AuditSink,
    private readonly denials?: RecentDenials,
  ) {
    this.type = direction === 'inbound' ? 'inbound_decision' : 'outbound_decision';
  }

  /**
   * `start` is the request's `performance.now()` on arrival. Positional, so the hot path builds
   * exactly one object (the audit record, always of the same shape).
   */
  record(
    start: number,
    decision: 'allow' | 'deny' | 'error',
    reason: string,
    status: number,
    method: string | undefined,
    path: string | undefined,
    peer: string | undefined,
    route: string | undefined,
    action: string | undefined,
    requestId?: string,
  ): void {
    const ms = performance.now() - start;
    this.metrics.request(this.direction, decision, reason, ms / 1000);
    const fields: RequestDecisionRecord = {
      type: this.type,
      decision,
      reason,
      peer,
      method,
      path,
      action,
      route,
      status,
      latency_ms: Math.round(ms * 1000) / 1000,
      request_id: requestId,
    };
    this.audit.record(fields);
    if (fields.decision !== 'allow' && this.denials) {
      this.denials.push({
        time: new Date().toISOString(),
        direction: this.direction,
        reason: fields.reason,
        ...(fields.peer !== undefined ? { peer: fields.peer } : {}),
        ...(fields.route !== undefined ? { route: fields.route } : {}),
        ...(fields.method !== undefined ? { method: fields.method } : {}),
        ...(fields.path !== undefined ? { path: fields.path } : {}),
        ...(fields.action !== undefined ? { action: fields.action } : {}),
        ...(fields.status !== undefined ? { status: fields.status } : {}),
      });
    }
  }
}

/** The path of a request target without its query: query strings can carry secrets. */
export function pathOnly(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
