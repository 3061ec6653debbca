/**
 * The refusal catalogue: every reason code the sidecar reports, with what a refused request gets
 * (status, message, whether its connection closes). The JSON bodies, the audit records, the
 * metric labels and the denial table of docs/reasons.md all derive from this one table, so a
 * code means the same thing everywhere an operator meets it.
 *
 * A refusal whose message never varies is built once, at load; the request path hands out the
 * same frozen object every time.
 */

/** Where a reason code is met. */
export type ReasonKind =
  /** A refused HTTP request: the caller gets `status` and `{"error": message}`. */
  | 'request'
  /** Evidence that did not verify or satisfy the policy: 403 `{"error": "Attestation failed: ..."}`. */
  | 'attestation'
  /** A TLS peer refused during or right after the handshake (audited as `peer_rejected`). */
  | 'handshake'
  /** A connection closed over a cap or past a timeout (audited as `connection_refused`). */
  | 'connection'
  /** A configuration, policy or state file refused (start-up or reload). */
  | 'config'
  /** Not a refusal: how an allowed or failed exchange ended, or an operator event. */
  | 'outcome';

export interface ReasonSpec {
  readonly kind: ReasonKind;
  /** HTTP status of a refused request (request and attestation kinds). */
  readonly status?: number;
  /**
   * The caller-facing message. Fixed text, or a pattern with `<placeholders>` for messages that
   * name what was refused (`Action '<action>' not permitted`); patterns are documentation only.
   */
  readonly message: string;
  /** The connection is closed after the answer. */
  readonly close?: boolean;
  /** Audit decision of a refused request: a policy `deny` (default) or an `error` of this side or upstream. */
  readonly decision?: 'deny' | 'error';
  /** Which side answers it (docs). */
  readonly where?: 'inbound' | 'outbound' | 'both' | 'any listener' | 'admin';
  /** One line for the docs table: when this happens. */
  readonly doc: string;
}

export const REASONS = {
  // Policy decisions (inbound).
  unknown_agent: { kind: 'request', status: 403, message: 'Unknown agent', where: 'inbound', doc: "the caller's SPIFFE ID is bound to no agent of the policy" },
  no_action_mapped: { kind: 'request', status: 403, message: 'No action mapped for <method> <path>', where: 'inbound', doc: 'no `actions` mapping matches the request' },
  action_not_permitted: { kind: 'request', status: 403, message: "Action '<action>' not permitted", where: 'inbound', doc: "the action is not in the agent's `allowed_actions`" },
  permission_not_granted: { kind: 'request', status: 403, message: "Permission '<permission>' on resource '<resource>' not granted", where: 'inbound', doc: 'no `access_control` entry grants it to a peer holding the claim' },
  no_policy: { kind: 'request', status: 503, message: 'No policy loaded', where: 'inbound', doc: 'the sidecar holds no valid policy' },
  attestation_required: { kind: 'request', status: 401, message: 'Attestation required', where: 'inbound', doc: 'the agent must attest; answered with `attest-challenge` (the outbound sidecar replies transparently)' },
  peer_unverified: { kind: 'request', status: 403, message: 'Peer identity not verified', where: 'inbound', doc: 'a request arrived on a connection whose peer was not verified' },
  svid_expired: { kind: 'request', status: 403, message: 'Peer SVID expired', close: true, where: 'inbound', doc: "the peer's certificate expired while its connection was kept alive" },
  agent_revoked: { kind: 'request', status: 403, message: 'Agent revoked', close: true, where: 'inbound', doc: 'the kill switch revoked the peer; its connection is closed after the answer' },
  path_not_canonical: { kind: 'request', status: 400, message: 'Malformed request path: <why>', where: 'both', doc: 'dot segments, `//`, encoded separators or non-shortest UTF-8 in the path' },
  internal_error: { kind: 'request', status: 500, message: 'Internal error', decision: 'error', where: 'both', doc: 'a bug on the request path fails that request, never the process' },
  // Outbound side (the agent's proxy).
  caller_unauthenticated: { kind: 'request', status: 407, message: 'Proxy authentication required: send the caller token as the proxy password (http://agent:TOKEN@host:port)', where: 'outbound', doc: '`caller_token_file` is set and the request carries no or a wrong token; answered with `proxy-authenticate`' },
  caller_token_unavailable: { kind: 'request', status: 503, message: 'Caller token unavailable: <why>', decision: 'error', where: 'outbound', doc: 'the caller token file cannot be read: every request is refused until it can' },
  request_headers_too_many: { kind: 'request', status: 431, message: 'Too many request headers (limit <max>)', where: 'both', doc: 'more header fields than `max_request_headers`' },
  no_route_named: { kind: 'request', status: 400, message: 'Request names no route: use an absolute-form URL or a Host header', where: 'outbound', doc: 'neither an absolute-form URL nor a Host header names a route' },
  unknown_route: { kind: 'request', status: 404, message: "Unknown route '<route>'", where: 'outbound', doc: 'the named route is not configured' },
  browser_request: { kind: 'request', status: 403, message: 'Browser-originated requests are refused: a web page must never use the agent identity', where: 'outbound', doc: 'the request carries browser-only fields or a browser User-Agent and the route does not set `allow_browser_requests`' },
  no_svid: { kind: 'request', status: 503, message: 'No valid SVID: the sidecar has no unexpired identity', where: 'outbound', doc: 'no identity yet, or the SVID expired without rotation' },
  kill_switch: { kind: 'request', status: 503, message: 'Sidecar stopped by the kill switch', where: 'outbound', doc: 'a kill-all revocation, or our own SPIFFE ID is revoked' },
  upstream_revoked: { kind: 'request', status: 403, message: 'Upstream revoked', where: 'outbound', doc: "the route's `server_id` is revoked" },
  credential_unavailable: { kind: 'request', status: 503, message: "Upstream credential for route '<route>' is unavailable: <why>", decision: 'error', where: 'outbound', doc: "a secret file of the route's `inject_headers` is missing or invalid" },
  budget_ledger_unavailable: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'outbound', doc: 'a metered route charges a budget but no budget ledger is configured' },
  request_body_timeout: { kind: 'request', status: 408, message: 'Request body timeout', where: 'both', doc: 'the request body brought no byte for `body_progress_timeout`; the connection is closed' },
  request_body_unreadable: { kind: 'request', status: 400, message: 'Request body could not be read: <why>', where: 'outbound', doc: 'a body buffered for an attestation replay failed (client left, more bytes than announced)' },
  attestation_replay_too_large: { kind: 'request', status: 413, message: 'Attestation challenge could not be answered: a request body of unknown length or over 65536 bytes cannot be replayed', decision: 'error', where: 'outbound', doc: 'the peer challenged a request whose body was not buffered (chunked or over 64 KiB)' },
  attestation_challenge_unknown: { kind: 'request', status: 502, message: "Unknown attestation challenge '<challenge>'", decision: 'error', where: 'outbound', doc: 'the peer sent an `attest-challenge` this sidecar does not understand' },
  attester_error: { kind: 'request', status: 502, message: 'Attestation failed on this side: <why>', decision: 'error', where: 'outbound', doc: 'producing our own evidence failed' },
  method_not_supported: { kind: 'request', status: 405, message: 'CONNECT is not supported: send plain HTTP to the sidecar, it originates mTLS', close: true, where: 'outbound', doc: 'CONNECT and Upgrade requests; the connection is closed' },
} as const satisfies Record<string, ReasonSpec>;

export type ReasonCode = keyof typeof REASONS;

/** What a refused request is answered with. One shape for every refusal on every path. */
export interface Refusal {
  readonly reason: ReasonCode;
  readonly status: number;
  /** The caller-facing message (the `error` of the body). */
  readonly error: string;
  /** `{"error": error}`, JSON-escaped, computed once per refusal. */
  readonly body: string;
  /** The connection is closed after the answer. */
  readonly close: boolean;
  readonly decision: 'deny' | 'error';
  /** Extra response headers (`attest-challenge`, `retry-after`, `proxy-authenticate`). */
  readonly headers?: Readonly<Record<string, string>>;
}

export function isReasonCode(code: string): code is ReasonCode {
  return Object.hasOwn(REASONS, code);
}

export function reasonSpec(code: ReasonCode): ReasonSpec {
  return REASONS[code];
}

const FIXED = new Map<ReasonCode, Refusal>();

/**
 * The refusal for `reason` with its catalogue message. For codes whose message is fixed this is
 * one frozen object for the process's life (the deny path allocates nothing).
 */
export function refusal(reason: ReasonCode): Refusal {
  let r = FIXED.get(reason);
  if (r === undefined) {
    r = refuse(reason, REASONS[reason].message);
    FIXED.set(reason, r);
  }
  return r;
}

/** A refusal for `reason` whose message names what was refused. */
export function refuse(reason: ReasonCode, error: string, headers?: Readonly<Record<string, string>>): Refusal {
  const spec: ReasonSpec = REASONS[reason];
  const r: Refusal = {
    reason,
    status: spec.status ?? 500,
    error,
    body: JSON.stringify({ error }),
    close: spec.close ?? false,
    decision: spec.decision ?? 'deny',
    ...(headers ? { headers } : {}),
  };
  return Object.freeze(r);
}
