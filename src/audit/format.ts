/**
 * Audit line formatting for the hot path. Every request writes one record, and V8's generic
 * JSON.stringify of a 9-field object costs several times what a fixed template does, so the
 * record's known fields are written in a fixed order with string escaping only where a value
 * needs it.
 *
 * Lines are pure ASCII: everything outside printable ASCII is written as a \uXXXX escape (valid
 * JSON with the same value). A line's bytes are then its characters, so the sink can hash and
 * copy it without UTF-8 encoding, and a hostile path cannot put terminal controls, bidi
 * overrides or look-alike characters into the file a person reads.
 */
import type { AuditFields } from './record.js';

/** Characters a JSON string must escape, and everything outside printable ASCII. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\uffff]/;
const NON_ASCII = /[\u007f-\uffff]/g;

function unicodeEscape(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** A JSON string literal of `s`, in printable ASCII only. */
export function asciiJsonString(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text).replace(NON_ASCII, unicodeEscape) : `"${text}"`;
}

const str = asciiJsonString;

/**
 * A flat copy of an ASCII string. V8 keeps a concatenation as a tree of its pieces, and hashing
 * or copying a line walks every piece of every subtree; a part reused for many lines (the
 * memoised head below, the sink's prefix) is flattened once instead. Only for ASCII (latin1
 * round trip), which everything this module writes is.
 */
export function flatAscii(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}

/**
 * asciiJsonString for fields with few distinct values (reason codes, SPIFFE IDs, methods,
 * action and route names from the config): the escaped literal is looked up, not rescanned.
 * Bounded; request paths and free text never go through it.
 */
const literals = new Map<string, string>();
const MAX_LITERALS = 1024;

function lit(text: string): string {
  let v = literals.get(text);
  if (v === undefined) {
    v = asciiJsonString(text);
    if (literals.size >= MAX_LITERALS) literals.clear();
    literals.set(text, v);
  }
  return v;
}

/**
 * A JSON number as JSON.stringify writes it. Latencies are rounded to microseconds, and V8's
 * shortest-decimal conversion of a fraction costs more than the rest of the record, so a
 * whole number of thousandths is written from integers: the shortest decimal of k/1000 is
 * k/1000 itself (doubles this size are far denser than 0.001), without trailing zeros.
 */
export function num(n: number): string {
  const k = Math.round(n * 1000);
  if (k >= 0 && k < 1e15 && k / 1000 === n) {
    const whole = Math.floor(k / 1000);
    const frac = k - whole * 1000;
    if (frac === 0) return String(whole);
    if (frac % 100 === 0) return `${whole}.${frac / 100}`;
    if (frac % 10 === 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`;
    return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
  }
  return Number.isFinite(n) ? String(n) : 'null';
}

/** Every field of every record kind, in the order written. The type check below keeps it complete. */
export const AUDIT_FIELDS = [
  'type', 'decision', 'reason', 'peer', 'method', 'path', 'action', 'route', 'status', 'latency_ms', 'request_id', 'detail',
  'agent', 'amount_usd', 'spent_usd', 'limit_usd', 'principal', 'target', 'remote', 'count',
] as const;
type Unlisted = Exclude<keyof AuditFields, (typeof AUDIT_FIELDS)[number]>;
// Fails to compile when a record kind gains a field this formatter does not write.
const complete: [Unlisted] extends [never] ? true : Unlisted = true;
void complete;

/**
 * The record's JSON members without the braces: `"type":"...","decision":"...",...`, in
 * printable ASCII. Undefined fields are left out; non-finite numbers become null (as
 * JSON.stringify does).
 */
export function auditMembers(r: AuditFields): string {
  let o = membersHead(r);
  if (r.latency_ms !== undefined) o += `,"latency_ms":${num(r.latency_ms)}`;
  return o + membersTail(r);
}

/** The members before latency_ms: a function of type, decision, reason, peer, method, path, action, route and status only. */
function membersHead(r: AuditFields): string {
  let o = `"type":"${r.type}","decision":"${r.decision}","reason":${lit(r.reason)}`;
  if (r.peer !== undefined) o += `,"peer":${lit(r.peer)}`;
  if (r.method !== undefined) o += `,"method":${lit(r.method)}`;
  if (r.path !== undefined) o += `,"path":${str(r.path)}`;
  if (r.action !== undefined) o += `,"action":${lit(r.action)}`;
  if (r.route !== undefined) o += `,"route":${lit(r.route)}`;
  if (r.status !== undefined) o += `,"status":${num(r.status)}`;
  return o;
}

/** The members after latency_ms; only the request id for request decisions. */
function membersTail(r: AuditFields): string {
  let o = '';
  if (r.request_id !== undefined) o += `,"request_id":${str(r.request_id)}`;
  if (r.detail !== undefined) o += `,"detail":${str(r.detail)}`;
  if (r.agent !== undefined) o += `,"agent":${str(r.agent)}`;
  if (r.amount_usd !== undefined) o += `,"amount_usd":${num(r.amount_usd)}`;
  if (r.spent_usd !== undefined) o += `,"spent_usd":${num(r.spent_usd)}`;
  if (r.limit_usd !== undefined) o += `,"limit_usd":${num(r.limit_usd)}`;
  if (r.principal !== undefined) o += `,"principal":${str(r.principal)}`;
  if (r.target !== undefined) o += `,"target":${str(r.target)}`;
  if (r.remote !== undefined) o += `,"remote":${str(r.remote)}`;
  if (r.count !== undefined) o += `,"count":${num(r.count)}`;
  return o;
}

/**
 * auditMembers for a stream of records, remembering the previous record's head (the members
 * before latency_ms). A keep-alive peer mostly repeats its request, so most records differ from
 * the one before only in latency: the head, about two thirds of the formatting work, is then
 * reused after nine comparisons. The output is always exactly auditMembers(r).
 */
export class AuditMembersFormatter {
  private last: AuditFields | undefined;
  private head = '';

  format(r: AuditFields): string {
    const l = this.last;
    if (
      l === undefined ||
      r.status !== l.status ||
      r.path !== l.path ||
      r.peer !== l.peer ||
      r.reason !== l.reason ||
      r.action !== l.action ||
      r.route !== l.route ||
      r.method !== l.method ||
      r.decision !== l.decision ||
      r.type !== l.type
    ) {
      this.head = flatAscii(membersHead(r));
    }
    this.last = r;
    let o = this.head;
    if (r.latency_ms !== undefined) o += `,"latency_ms":${num(r.latency_ms)}`;
    return o + membersTail(r);
  }
}

/**
 * ISO 8601 timestamps (as Date#toISOString) for a clock read on every record: the date and
 * time up to the second are formatted once per second, the milliseconds appended.
 */
export class IsoClock {
  private second = NaN;
  private head = '';

  format(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.second) {
      this.second = second;
      this.head = new Date(second * 1000).toISOString().slice(0, -4); // keep "...:SS."
    }
    const frac = ms - second * 1000;
    return `${this.head}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
  }
}
