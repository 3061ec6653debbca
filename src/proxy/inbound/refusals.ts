/**
 * Answers from leaf modules that report a refusal as `{status, reason, body}` (the header
 * screen, the spend gate), turned into the catalogue's Refusal so that one path answers and
 * records every refusal. Only refused requests get here.
 */
import { isReasonCode, refuse, type Refusal } from '../../reasons.js';

export interface StatusReasonBody {
  readonly status: number;
  readonly reason: string;
  readonly body: string;
}

export function asRefusal(r: StatusReasonBody | Refusal): Refusal {
  if ('error' in r && 'close' in r) return r;
  const error = messageOf(r.body);
  if (isReasonCode(r.reason)) {
    const catalogued = refuse(r.reason, error);
    if (catalogued.status === r.status) return catalogued;
  }
  // A code or status the catalogue does not hold: answered as the module said, never dropped.
  return Object.freeze({ reason: r.reason as Refusal['reason'], status: r.status, error, body: r.body, close: false, decision: 'deny' as const });
}

function messageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : body;
  } catch {
    return body;
  }
}
