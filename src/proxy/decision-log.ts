/**
 * One place where a finished request is counted and audited, so the metric label and the
 * audit record always carry the same reason code.
 */
import type { AuditRecord, AuditSink } from '../log.js';
import type { Direction, SidecarMetrics } from '../admin/metrics.js';

export type DecisionFields = Omit<AuditRecord, 'type' | 'latency_ms' | 'decision' | 'reason'> & {
  decision: 'allow' | 'deny' | 'error';
  reason: string;
};

export class DecisionLog {
  private readonly type: AuditRecord['type'];

  constructor(
    private readonly direction: Direction,
    private readonly metrics: SidecarMetrics,
    private readonly audit: AuditSink,
  ) {
    this.type = direction === 'inbound' ? 'inbound_decision' : 'outbound_decision';
  }

  /** `start` is the request's `performance.now()` on arrival. `fields` becomes the record (not copied). */
  record(start: number, fields: DecisionFields): void {
    const ms = performance.now() - start;
    this.metrics.request(this.direction, fields.decision, fields.reason, ms / 1000);
    (fields as AuditRecord).type = this.type;
    (fields as AuditRecord).latency_ms = Math.round(ms * 1000) / 1000;
    this.audit.record(fields as AuditRecord);
  }
}

/** The path of a request target without its query: query strings can carry secrets. */
export function pathOnly(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
