/**
 * The request header fields the sidecar owns, whatever a caller sends (docs/identity-headers.md):
 *
 * - how many fields a request may carry: an app that keeps only the first N fields (Node keeps
 *   about 1,000) must never lose the identity fields, so requests with more than the limit are refused
 *   (431) and the sidecar's own fields go first;
 * - identity (`x-spiffe-id`, `x-forwarded-client-cert`) and forwarding fields (`x-forwarded-*`,
 *   `Forwarded`, `X-Real-IP`): a caller's copies are dropped, the sidecar sets its own;
 * - method and URL overrides (`X-HTTP-Method-Override`, `X-Original-URL`, ...): refused (400), as
 *   they would make the app act on another action than the one the policy decided;
 * - look-alikes that differ only by `_` for `-` (`x_spiffe_id`): CGI-style frameworks (WSGI, Rack,
 *   PHP) read both spellings as the same variable, so they get the treatment of the name they
 *   imitate;
 * - `x-request-id`: a caller's well-formed id is kept, otherwise one is generated; it is passed on
 *   and written into the audit record so that both sidecars' records and the app's logs correlate.
 */
import { randomBytes } from 'node:crypto';
import { ATTESTATION_HEADERS } from './attestation-gate.js';
import { HOP_BY_HOP, IDENTITY_HEADERS, connectionListed, xfccValue } from './headers.js';
import { refuse, type ReasonCode, type Refusal } from '../reasons.js';

export const H_REQUEST_ID = 'x-request-id';

export const TOO_MANY_HEADERS_REASON = 'request_headers_too_many' satisfies ReasonCode;
export const OVERRIDE_REFUSED_REASON = 'override_header_refused' satisfies ReasonCode;

/** The 431 refusal for `max` (callers build it once). */
export function tooManyHeadersRefusal(max: number): Refusal {
  return refuse(TOO_MANY_HEADERS_REASON, `Too many request headers (limit ${max})`);
}

/** Fields that tell an app to act on another method or target than the request line's. */
export const OVERRIDE_HEADERS: readonly string[] = [
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
];

/**
 * Fields never passed to the app, besides every `x-forwarded-*` name: the sidecar sets its own
 * identity and forwarding fields, and consumes the attestation ones.
 */
export const REMOVED_HEADERS: readonly string[] = [...IDENTITY_HEADERS, 'forwarded', 'x-real-ip', ...ATTESTATION_HEADERS];

const DROP = 1;
const REFUSE = 2;
const REQUEST_ID = 3;

/** Treatment by lower-case name with every `_` read as `-`. */
const INBOUND_FIELDS = new Map<string, number>([
  ...REMOVED_HEADERS.map((n): [string, number] => [n, DROP]),
  ...OVERRIDE_HEADERS.map((n): [string, number] => [n, REFUSE]),
  [H_REQUEST_ID, REQUEST_ID],
]);
const FORWARDED_PREFIX = 'x-forwarded-';

/**
 * Lengths of every name the screen acts on (and of their look-alikes, which have the same
 * length): any other name skips the lower-casing. `x-forwarded-*` is recognised by its shape.
 */
const SCREENED_LENGTHS = new Uint8Array(256);
for (const n of [...INBOUND_FIELDS.keys(), ...HOP_BY_HOP]) SCREENED_LENGTHS[Math.min(n.length, 255)] = 1;

function mayBeForwardedField(name: string): boolean {
  if (name.length < FORWARDED_PREFIX.length || (name.charCodeAt(0) | 0x20) !== 0x78) return false;
  const sep = name.charCodeAt(FORWARDED_PREFIX.length - 1);
  return sep === 0x2d || sep === 0x5f;
}

export type InboundScreen =
  | { ok: true; requestId: string; headers: string[] }
  /** Refused: the refusal, with the request's id for its audit record. */
  | (Refusal & { readonly ok: false; readonly requestId: string });

/**
 * One pass over a request's raw headers for the app: refuses a request with more than
 * `maxFields` fields (431) or with an override field (400); otherwise the list to forward:
 * `lead` (the identity and forwarding fields, see appLeadHeaders), `x-request-id`, then the
 * caller's fields without hop-by-hop, Connection-listed, replaced and look-alike ones.
 * `tooMany` is tooManyHeadersRefusal(maxFields).
 */
export function screenInboundHeaders(raw: readonly string[], maxFields: number, tooMany: Refusal, lead: readonly string[]): InboundScreen {
  if (raw.length > 2 * maxFields) return { ...tooMany, ok: false, requestId: newRequestId() };
  const listed = connectionListed(raw);
  const out = lead.slice();
  out.push(H_REQUEST_ID, '');
  let callerId: string | undefined;
  let callerIds = 0;
  let refused: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (SCREENED_LENGTHS[Math.min(name.length, 255)] === 1 || listed !== undefined || mayBeForwardedField(name)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || listed?.has(lower)) continue;
      const key = lower.includes('_') ? lower.replaceAll('_', '-') : lower;
      const treatment = INBOUND_FIELDS.get(key) ?? (key.startsWith(FORWARDED_PREFIX) ? DROP : 0);
      if (treatment === REFUSE) refused ??= name;
      if (treatment === REQUEST_ID && key === lower) {
        callerIds++;
        callerId = raw[i + 1];
      }
      if (treatment !== 0) continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const requestId = callerIds === 1 && isWellFormedRequestId(callerId!) ? callerId! : newRequestId();
  if (refused !== undefined) {
    const refusal = refuse(OVERRIDE_REFUSED_REASON, `Request header '${refused}' is refused: it would make the app act on another method or path than the policy decided`);
    return { ...refusal, ok: false, requestId };
  }
  out[lead.length + 1] = requestId;
  return { ok: true, requestId, headers: out };
}

/**
 * The fields the app gets first on every request of a connection: the verified identity, and the
 * forwarding facts of the mTLS hop (the caller's own forwarding fields are unverifiable and dropped).
 */
export function appLeadHeaders(ownId: string, peer: { id: string; leafSha256Hex: string }, remoteAddress: string | undefined): string[] {
  const lead = ['x-forwarded-client-cert', xfccValue(ownId, peer.leafSha256Hex, peer.id), 'x-spiffe-id', peer.id, 'x-forwarded-proto', 'https'];
  if (remoteAddress) lead.push('x-forwarded-for', remoteAddress);
  return lead;
}

/** The agent's single well-formed `x-request-id`, or a new one (outbound: the agent's fields pass on as they are). */
export function outboundRequestId(raw: readonly string[]): string {
  let found: string | undefined;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === H_REQUEST_ID.length && name.toLowerCase() === H_REQUEST_ID) {
      count++;
      found = raw[i + 1];
    }
  }
  return count === 1 && isWellFormedRequestId(found!) ? found! : newRequestId();
}

const MAX_REQUEST_ID_LENGTH = 128;
/** Letters, digits and `-_.:@`: UUIDs, ULIDs and most tracing ids; safe in logs and URLs, and kept whole by frameworks that sanitise ids. */
const REQUEST_ID_CHAR = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@') REQUEST_ID_CHAR[c.charCodeAt(0)] = 1;

export function isWellFormedRequestId(v: string): boolean {
  if (v.length === 0 || v.length > MAX_REQUEST_ID_LENGTH) return false;
  for (let i = 0; i < v.length; i++) if (REQUEST_ID_CHAR[v.charCodeAt(i)] !== 1) return false;
  return true;
}

/**
 * Generated ids are RFC 9562 version-8 (custom) UUIDs: 74 random bits drawn once per process,
 * then a 48-bit counter starting at a random value. Unique without per-request crypto; not
 * secret and not unpredictable (never use one as a token).
 */
const ID_RANDOM = randomBytes(14);
const ID_PREFIX = (() => {
  const h = ID_RANDOM.toString('hex', 0, 10);
  const variant = (0x8 | (ID_RANDOM[8]! & 0x3)).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(12, 15)}-${variant}${h.slice(15, 18)}-`;
})();
const COUNTER_SPAN = 2 ** 48;
let idCounter = ID_RANDOM.readUInt32BE(10);

export function newRequestId(): string {
  idCounter = idCounter + 1 === COUNTER_SPAN ? 0 : idCounter + 1;
  return ID_PREFIX + idCounter.toString(16).padStart(12, '0');
}
