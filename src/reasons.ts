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
  /** A connection closed over a cap or past a timeout (audited as `connection_refused`); some get a last answer. */
  | 'connection'
  /** An admin API request refused (`{"error": message}`, some with `"reason"`), audited as `admin_auth_failed` or `admin_action`. */
  | 'admin'
  /** A configuration, policy, identity or state file refused (start-up or reload). */
  | 'config'
  /** An operational failure inside a part (identity source, ledger, evidence collateral, audit file, usage meter): logged, counted or audited. */
  | 'failure'
  /** A problem `attest-sidecar audit verify` finds in an audit log (the exit status says there was one). */
  | 'audit'
  /** Not a refusal: how an allowed or failed exchange ended, or an operator or audit event. */
  | 'outcome';

export interface ReasonSpec {
  readonly kind: ReasonKind;
  /** HTTP status of a refused request (request, attestation and admin kinds; connection answers). */
  readonly status?: number;
  /**
   * The caller-facing message. Fixed text, or a pattern with `<placeholders>` for messages that
   * name what was refused (`Action '<action>' not permitted`); patterns are documentation only.
   */
  readonly message: string;
  /** An instance of a patterned message, for the README (`Action 'fuzzer.write_harness' not permitted`). */
  readonly example?: string;
  /** The connection is closed after the answer. */
  readonly close?: boolean;
  /** Audit decision of a refused request: a policy `deny` (default) or an `error` of this side or upstream. */
  readonly decision?: 'deny' | 'error';
  /** Which side answers it (docs). */
  readonly where?: ReasonWhere;
  /** Response headers sent with the refusal (docs; the refusal carries their values). */
  readonly headers?: string;
  /** One line for the docs table: when this happens. */
  readonly doc: string;
}

/** Where a code is met: a listener, the admin API, start-up, the running sidecar (reloads, sources, attesters), or `audit verify`. */
export type ReasonWhere = 'inbound' | 'outbound' | 'both' | 'any listener' | 'admin' | 'start-up' | 'runtime' | 'audit verify';

export const REASONS = {
  // Policy decisions (inbound).
  unknown_agent: { kind: 'request', status: 403, message: 'Unknown agent', where: 'inbound', doc: "the caller's SPIFFE ID is bound to no agent of the policy" },
  no_action_mapped: { kind: 'request', status: 403, message: 'No action mapped for <method> <path>', example: 'No action mapped for DELETE /agents', where: 'inbound', doc: 'no `actions` mapping matches the request' },
  action_not_permitted: { kind: 'request', status: 403, message: "Action '<action>' not permitted", example: "Action 'fuzzer.write_harness' not permitted", where: 'inbound', doc: "the action is not in the agent's `allowed_actions`" },
  permission_not_granted: { kind: 'request', status: 403, message: "Permission '<permission>' on resource '<resource>' not granted", example: "Permission 'read' on resource 'ledger_db' not granted", where: 'inbound', doc: 'no `access_control` entry grants it to a peer holding the claim' },
  no_policy: { kind: 'request', status: 503, message: 'No policy loaded', where: 'inbound', doc: 'the sidecar holds no valid policy' },

  // Attestation challenges (inbound): the outbound sidecar answers them transparently.
  attestation_required: { kind: 'request', status: 401, message: 'Attestation required', headers: 'attest-challenge: evidence', where: 'inbound', doc: 'the agent must attest and sent no evidence, or a reference the verdict cache no longer holds' },
  attestation_fresh_required: { kind: 'request', status: 401, message: 'Fresh attestation required', headers: 'attest-challenge: nonce=<nonce>', where: 'inbound', doc: 'the action needs evidence over a fresh nonce (`freshness: per_request` or a per-request action)' },
  attestation_nonce_invalid: { kind: 'request', status: 401, message: 'Attestation nonce unknown, expired or already used', headers: 'attest-challenge: nonce=<nonce>', where: 'inbound', doc: 'the nonce was not issued to this peer key, expired or was used; a new one is issued' },
  attestation_unavailable: { kind: 'request', status: 403, message: 'Attestation required', where: 'inbound', doc: "the agent's policy requires attestation but the inbound listener was built without an attestation gate, which only an embedder can do: fail closed, without a challenge" },

  // Peer checks per request (inbound).
  peer_unverified: { kind: 'request', status: 403, message: 'Peer identity not verified', where: 'inbound', doc: 'a request arrived on a connection whose peer was not verified (also on the mTLS admin listener)' },
  svid_expired: { kind: 'request', status: 403, message: 'Peer SVID expired', close: true, where: 'inbound', doc: "the peer's certificate expired while its connection was kept alive (also a handshake rejection: a chain certificate expired at our clock)" },
  peer_trust_withdrawn: { kind: 'request', status: 403, message: 'Peer no longer trusted', close: true, where: 'inbound', doc: "the trust bundles changed while the peer's connection was open (a federation removed, a CA revoked) and no longer hold the authority its certificate chains to (an mTLS admin connection is closed at once)" },
  agent_revoked: { kind: 'request', status: 403, message: 'Agent revoked', close: true, where: 'inbound', doc: 'the kill switch revoked the peer (also when a revocation lands while a budget charge is made)' },

  // Request screening (both directions).
  path_not_canonical: { kind: 'request', status: 400, message: 'Malformed request path: <why>', example: 'Malformed request path: ...', where: 'both', doc: 'dot segments, `//`, encoded separators or non-shortest UTF-8 in the path' },
  override_header_refused: { kind: 'request', status: 400, message: "Request header '<name>' is refused: it would make the app act on another method or path than the policy decided", example: "Request header 'x-http-method-override' is refused: ...", where: 'inbound', doc: 'a method or URL override header (`X-HTTP-Method-Override`, `X-Original-URL`, ...) or its `_` look-alike' },
  request_headers_too_many: { kind: 'request', status: 431, message: 'Too many request headers (limit <max>)', example: 'Too many request headers (limit 100)', where: 'both', doc: 'more header fields than `max_request_headers` (inbound default 100, outbound 90)' },
  peer_concurrency_exceeded: { kind: 'request', status: 429, message: 'Too many concurrent requests from this peer identity', headers: 'retry-after: 1', where: 'inbound', doc: "the peer identity's share of the app connections is in use and its queue is full or its wait ran out (a request with an unread body also closes its connection)" },
  request_body_timeout: { kind: 'request', status: 408, message: 'Request body timeout', where: 'both', doc: 'no request body byte for `body_progress_timeout`' },
  request_body_unreadable: { kind: 'request', status: 400, message: 'Request body could not be read: <why>', example: 'Request body could not be read: ...', close: true, where: 'outbound', doc: 'the body buffered for an attestation replay could not be read' },

  // Budgets (both directions; budgets fail closed).
  budget_exceeded: { kind: 'request', status: 402, message: 'Budget exceeded', where: 'both', doc: 'spent >= limit in the current period (inbound: the agent; outbound: our own metered model route)' },
  budget_ledger_unavailable: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'the agent has a budget but the sidecar runs no budget ledger' },
  budget_store_unavailable: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'the budget store (Redis, or a closed local ledger) cannot answer' },
  budget_ledger_failed: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'the local ledger failed to persist a charge; it refuses charges until restart' },
  budget_ledger_locked: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'another process holds the ledger directory (also refused at start-up)' },
  budget_ledger_corrupt: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'a journal or snapshot of the ledger is damaged (also refused at start-up)' },
  budget_invalid_argument: { kind: 'request', status: 503, message: 'Budget ledger unavailable', where: 'both', doc: 'a charge the ledger must not record (bad key or amount, an overflowing total)' },

  // Outbound (the agent's side).
  caller_unauthenticated: { kind: 'request', status: 407, message: 'Proxy authentication required: send the caller token as the proxy password (http://agent:TOKEN@host:port)', headers: 'proxy-authenticate: Basic realm="attest-sidecar"', where: 'outbound', doc: 'with `caller_token_file`: the request lacks the caller token' },
  caller_token_unavailable: { kind: 'request', status: 503, message: 'Caller token unavailable: <why>', example: 'Caller token unavailable: ...', decision: 'error', where: 'outbound', doc: 'the caller token file is missing or invalid: every request is refused until it is fixed' },
  method_not_supported: { kind: 'request', status: 405, message: 'CONNECT is not supported: send plain HTTP to the sidecar, it originates mTLS', close: true, where: 'outbound', doc: 'CONNECT and protocol upgrades (the sidecar must see plain HTTP)' },
  no_route_named: { kind: 'request', status: 400, message: 'Request names no route: use an absolute-form URL or a Host header', where: 'outbound', doc: 'neither an absolute-form `http://` URL nor a Host header names a route' },
  unknown_route: { kind: 'request', status: 404, message: "Unknown route '<route>'", example: "Unknown route 'billing'", where: 'outbound', doc: 'no route of the config has that name' },
  browser_request: { kind: 'request', status: 403, message: 'Browser-originated requests are refused: a web page must never use the agent identity', where: 'outbound', doc: 'the request carries browser markers (per-route opt-out `allow_browser_requests`)' },
  no_svid: { kind: 'request', status: 503, message: 'No valid SVID: the sidecar has no unexpired identity', where: 'outbound', doc: 'no SVID yet, or ours expired without rotation' },
  kill_switch: { kind: 'request', status: 503, message: 'Sidecar stopped by the kill switch', where: 'outbound', doc: 'kill-all, or our own SPIFFE ID revoked' },
  upstream_revoked: { kind: 'request', status: 403, message: 'Upstream revoked', where: 'outbound', doc: "the route's `server_id` is revoked" },
  credential_unavailable: { kind: 'request', status: 503, message: "Upstream credential for route '<route>' is unavailable: <why>", example: "Upstream credential for route 'openai' is unavailable: ...", decision: 'error', where: 'outbound', doc: 'a secret file of a `tls: web` route is missing or invalid (the route fails closed)' },
  attester_error: { kind: 'request', status: 502, message: 'Attestation failed on this side: <why>', example: 'Attestation failed on this side: ...', decision: 'error', where: 'outbound', doc: 'our own evidence could not be produced' },
  attestation_replay_too_large: { kind: 'request', status: 413, message: 'Attestation challenge could not be answered: a request body of unknown length or over 65536 bytes cannot be replayed', decision: 'error', where: 'outbound', doc: 'the peer challenged a request whose body was not buffered for a replay' },
  attestation_challenge_unknown: { kind: 'request', status: 502, message: "Unknown attestation challenge '<challenge>'", example: "Unknown attestation challenge '...'", decision: 'error', where: 'outbound', doc: 'the peer sent an `attest-challenge` this sidecar does not understand' },

  // Upstream failures (the outbound routes; inbound: the app).
  upstream_unavailable: { kind: 'request', status: 503, message: 'Upstream unavailable (<code>)', example: 'Upstream unavailable (ECONNREFUSED)', decision: 'error', where: 'both', doc: 'connection refused, host unknown or unreachable (or `Upstream connection pool closed` during a rotation or revocation)' },
  upstream_connect_timeout: { kind: 'request', status: 504, message: 'Upstream connect timeout', decision: 'error', where: 'both', doc: 'the upstream did not accept the connection in time' },
  upstream_timeout: { kind: 'request', status: 504, message: 'Upstream timeout', decision: 'error', where: 'both', doc: 'no response headers or body progress within `request_timeout`' },
  upstream_reset: { kind: 'request', status: 502, message: 'Upstream connection failed (<code>)', example: 'Upstream connection failed (ECONNRESET)', decision: 'error', where: 'both', doc: 'the upstream reset or aborted the connection' },
  upstream_tls_error: { kind: 'request', status: 502, message: 'Upstream TLS failure: <why>', example: 'Upstream TLS failure: ...', decision: 'error', where: 'outbound', doc: "the upstream's certificate is not trusted, the TLS handshake failed, or the upstream refused our certificate (`the upstream sent the TLS alert 'bad certificate'`)" },
  upstream_error: { kind: 'request', status: 502, message: 'Upstream error: <why>', example: 'Upstream error: ...', decision: 'error', where: 'both', doc: 'any other transport error' },
  upstream_server_id_mismatch: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SPIFFE ID is not the route's `server_id`" },
  upstream_server_trust_domain_mismatch: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server is not in the route's `server_trust_domain`" },
  upstream_upstream_revoked: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: 'the server presented a revoked SPIFFE ID during the handshake' },
  upstream_svid_chain_empty: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_chain_empty`" },
  upstream_svid_no_uri_san: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_no_uri_san`" },
  upstream_svid_multiple_uri_san: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_multiple_uri_san`" },
  upstream_svid_invalid_spiffe_id: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_invalid_spiffe_id`" },
  upstream_svid_leaf_is_ca: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_leaf_is_ca`" },
  upstream_svid_leaf_key_usage: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_leaf_key_usage`" },
  upstream_svid_intermediate_not_ca: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_intermediate_not_ca`" },
  upstream_svid_no_bundle: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_no_bundle`" },
  upstream_svid_untrusted: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_untrusted`" },
  upstream_svid_expired: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_expired`" },
  upstream_svid_not_yet_valid: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_not_yet_valid`" },
  upstream_svid_name_constraints: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_name_constraints`" },
  upstream_svid_malformed: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_malformed`" },
  upstream_svid_chain_too_long: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's SVID failed `svid_chain_too_long`" },
  upstream_peer_no_certificate: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: 'the server presented no certificate' },
  upstream_x509_malformed: { kind: 'request', status: 502, message: 'Upstream identity rejected: <why>', example: 'Upstream identity rejected: ...', decision: 'error', where: 'outbound', doc: "the server's certificate could not be parsed" },
  upstream_response_unscannable: { kind: 'request', status: 502, message: "Upstream response with content-encoding '<encoding>' cannot be scanned for the injected credential", example: "Upstream response with content-encoding 'zstd' cannot be scanned ...", decision: 'error', where: 'outbound', doc: 'a route with injected credentials got a body in an encoding it cannot decode to scrub (today audited as `forwarded` with status 502)' },
  internal_error: { kind: 'request', status: 500, message: 'Internal error', decision: 'error', where: 'both', doc: 'a bug on the request path fails that request, never the process' },

  // Attestation failures (inbound): 403 `Attestation failed: <message>`.
  evidence_malformed: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the evidence cannot be parsed: truncated, oversized, bad magic, version or type' },
  evidence_unsupported: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'a version, algorithm or product the verifier does not handle' },
  evidence_stale: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the evidence is older than `max_evidence_age`' },
  signature_invalid: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the report or quote signature does not verify' },
  chain_invalid: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: "the signing key's certificate chain does not lead to a configured anchor" },
  collateral_missing: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'no VCEK, VLEK, AK or anchor to verify with' },
  collateral_expired: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'a certificate or collateral item is outside its validity at our clock' },
  tcb_mismatch: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: "the report's TCB or chip differs from what its signing certificate certifies" },
  binding_mismatch: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: "the evidence is not bound to the connection's SVID key (or to the nonce)" },
  pcr_mismatch: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the PCR digest does not recompute, or a PCR differs from the policy' },
  counter_regression: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'a TPM reset or restart counter or clock went backwards for a known AK' },
  measurement_mismatch: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the measurement is not `expected_mrenclave` (or the reference values)' },
  debug_enabled: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the guest allows debugging and the policy requires it disabled' },
  tcb_too_low: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'a TCB component is below `minimum_tcb`' },
  svn_too_low: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the security version is below `minimum_security_version`' },
  chip_not_allowed: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the chip ID is not in `allowed_chip_ids`' },
  ak_not_allowed: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the TPM attestation key is not among the pinned ones' },
  reference_values_unavailable: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'the named reference values are not loaded or have expired' },
  policy_mismatch: { kind: 'attestation', status: 403, message: 'Attestation failed: <message>', example: 'Attestation failed: <reason>', where: 'inbound', doc: 'another appraisal failure (TEE type, environment, VMPL, ...)' },
  verification_error: { kind: 'attestation', status: 403, message: 'Attestation failed: evidence could not be verified (<error>)', example: 'Attestation failed: evidence could not be verified (...)', where: 'inbound', doc: 'the verifier failed unexpectedly; the request is refused (fail closed)' },

  // Bytes that never became a request (any listener): a JSON answer, then the connection closes.
  headers_timeout: { kind: 'connection', status: 408, message: 'Request headers not received in time', close: true, where: 'any listener', doc: 'the request headers did not arrive within `headers_timeout`' },
  headers_too_large: { kind: 'connection', status: 431, message: 'Request headers too large', close: true, where: 'any listener', doc: "the request headers exceed the listener's header bytes" },
  chunk_extensions_too_large: { kind: 'connection', status: 413, message: 'Chunk extensions too large', close: true, where: 'any listener', doc: 'chunk extensions of a chunked body exceed node\'s bound' },
  malformed_request: { kind: 'connection', status: 400, message: 'Malformed HTTP request', close: true, where: 'any listener', doc: 'bytes that do not parse as HTTP/1.1' },
  // Connections closed without an answer.
  connection_limit: { kind: 'connection', message: '(closed without an answer)', close: true, where: 'any listener', doc: 'the listener holds `max_connections`' },
  peer_connection_limit: { kind: 'connection', message: '(closed without an answer)', close: true, where: 'inbound', doc: 'the peer identity holds `max_connections_per_peer` verified connections' },
  idle_timeout: { kind: 'connection', message: '(closed without an answer)', close: true, where: 'any listener', doc: 'no request within `idle_timeout` of accepting (or of the handshake)' },
  pipeline_limit: { kind: 'connection', message: '(closed without an answer)', close: true, where: 'any listener', doc: 'more than 16 pipelined requests in progress on one connection' },

  // TLS handshakes refused by OpenSSL (inbound, mTLS admin), before SPIFFE verification.
  tls_certificate_untrusted: { kind: 'handshake', message: 'client certificate refused: <code>', close: true, where: 'inbound', doc: 'the client certificate does not verify against any held bundle' },
  tls_certificate_expired: { kind: 'handshake', message: 'client certificate refused: CERT_HAS_EXPIRED', close: true, where: 'inbound', doc: 'the client certificate has expired' },
  tls_certificate_not_yet_valid: { kind: 'handshake', message: 'client certificate refused: CERT_NOT_YET_VALID', close: true, where: 'inbound', doc: 'the client certificate is not valid yet' },
  tls_no_client_certificate: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'the client sent no certificate' },
  tls_handshake_timeout: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'the handshake did not finish within `handshake_timeout`' },
  tls_handshake_aborted: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'the client reset the connection during the handshake' },
  tls_not_tls: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'the client did not speak TLS (e.g. plain HTTP)' },
  tls_protocol_version: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'no shared TLS version (1.2 or later)' },
  tls_no_shared_cipher: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'no shared cipher suite' },
  tls_handshake_failed: { kind: 'handshake', message: 'TLS handshake failed: <why>', close: true, where: 'inbound', doc: 'any other handshake failure' },
  // Peers refused right after the handshake by the X509-SVID rules (src/spiffe/verify.ts).
  svid_chain_empty: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the certificate chain is empty' },
  svid_no_uri_san: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the leaf has no URI SAN' },
  svid_multiple_uri_san: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the leaf has more than one URI SAN' },
  svid_invalid_spiffe_id: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: "the leaf's URI SAN is not a valid SPIFFE ID" },
  svid_leaf_is_ca: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the leaf is a CA certificate' },
  svid_leaf_key_usage: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the leaf carries `keyCertSign` or `cRLSign`' },
  svid_intermediate_not_ca: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'an intermediate is not a CA certificate' },
  svid_no_bundle: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: "no bundle is held for the leaf's trust domain" },
  svid_untrusted: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: "the chain does not lead to the bundle of the leaf's trust domain" },
  svid_not_yet_valid: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'a certificate of the chain is not valid yet at our clock' },
  svid_name_constraints: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: "the leaf's SPIFFE ID violates a CA's URI name constraints" },
  svid_malformed: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'a certificate of the chain could not be parsed' },
  svid_chain_too_long: { kind: 'handshake', message: '<why>', close: true, where: 'inbound', doc: 'the chain has more certificates than the bound (refused before any is parsed)' },
  peer_no_certificate: { kind: 'handshake', message: 'peer presented no certificate', close: true, where: 'inbound', doc: 'the peer presented no certificate' },
  // Outbound servers refused during the handshake by the route's identity check (reported as `upstream_<code>`).
  server_id_mismatch: { kind: 'handshake', message: 'server is <spiffe id>, route expects <server_id>', close: true, where: 'outbound', doc: "the server's SPIFFE ID is not the route's `server_id` (the request fails `upstream_server_id_mismatch`)" },
  server_trust_domain_mismatch: { kind: 'handshake', message: 'server <spiffe id> is not in trust domain <trust domain>', close: true, where: 'outbound', doc: "the server is outside the route's `server_trust_domain` (the request fails `upstream_server_trust_domain_mismatch`)" },

  // Admin API (admin listeners).
  admin_browser_request: { kind: 'admin', status: 403, message: '<why>', where: 'admin', doc: 'a mutation a browser sent for another page (form content type, foreign Origin, Fetch Metadata); the body also carries `"reason"`' },
  admin_auth_missing: { kind: 'admin', status: 401, message: 'admin requests need a bearer token (loopback) or an admin mTLS identity', headers: 'www-authenticate: Bearer realm="attest-sidecar admin"', where: 'admin', doc: 'no Authorization header' },
  admin_auth_invalid: { kind: 'admin', status: 401, message: "the Authorization header must be 'Bearer <token>'", headers: 'www-authenticate: Bearer realm="attest-sidecar admin"', where: 'admin', doc: 'a malformed header, a wrong token, or token authentication disabled (`wrong admin token`, `bearer token authentication is not enabled`)' },
  admin_not_loopback: { kind: 'admin', status: 403, message: 'bearer tokens are accepted on loopback only; remote admins must use mTLS', where: 'admin', doc: 'a bearer token from a non-loopback address' },
  admin_not_listed: { kind: 'admin', status: 403, message: '<spiffe id> is not listed under admins in the policy', where: 'admin', doc: "the mTLS peer is not in the policy's `admins`" },
  admin_rate_limited: { kind: 'admin', status: 429, message: 'too many failed admin authentication attempts; retry in <seconds> s (a valid credential is always accepted)', headers: 'retry-after: <seconds>', where: 'admin', doc: 'too many failed attempts from the address or peer in the window' },
  admin_bad_request: { kind: 'admin', status: 400, message: '<why>', where: 'admin', doc: 'a mutation with a missing or invalid field; the body also carries `"reason"`' },
  admin_action_failed: { kind: 'admin', status: 400, message: '<why>', where: 'admin', doc: 'a mutation failed for another reason; the body also carries `"reason"`' },
  revocation_invalid: { kind: 'admin', status: 400, message: '<why>', where: 'admin', doc: 'a revocation field (reason, principal, time) is invalid; the body also carries `"reason"`' },
  revoked_by_shared_list: { kind: 'admin', status: 409, message: '<spiffe id> is revoked by the shared revocation file <file>; remove it there (restore only lifts local revocations)', where: 'admin', doc: 'a restore of a revocation that a shared file holds' },
  admin_host_not_allowed: { kind: 'admin', status: 403, message: "Host '<host>' not allowed: use an IP address or localhost, or list the name in admin.allowed_hosts", where: 'admin', doc: 'a request on the loopback admin listener names a Host that is not an IP, localhost or in `admin.allowed_hosts` (DNS rebinding)' },
  admin_method_not_allowed: { kind: 'admin', status: 405, message: 'Method <method> not allowed', headers: 'allow: GET, HEAD (POST on /v1/kill, /v1/killall, /v1/restore)', where: 'admin', doc: 'a method the endpoint does not serve' },
  admin_endpoint_unknown: { kind: 'admin', status: 404, message: 'No admin endpoint <path>', where: 'admin', doc: 'no admin endpoint has that path' },
  admin_body_invalid: { kind: 'admin', status: 400, message: '<why>', where: 'admin', doc: 'a mutation body over 16 KiB, not `application/json`, not JSON or not an object' },
  revocations_write_failed: { kind: 'admin', status: 500, message: 'could not persist revocations to <file>: <why>', where: 'admin', doc: 'the change holds in memory but was not written to the state file' },

  // Configuration, policy and state files (start-up or reload).
  config_invalid: { kind: 'config', message: '<file>:<line>:<column> <key>: <why>', where: 'start-up', doc: 'the config file (or a value it names) is invalid' },
  policy_invalid: { kind: 'config', message: '<file>:<line>:<column> <key>: <why>', where: 'runtime', doc: 'the policy file is invalid; a reload keeps the last valid policy' },
  reference_values_invalid: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: 'a reference values file is unreadable or invalid' },
  reference_values_conflict: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: 'two reference values files define the same name' },
  reference_values_bad_signature: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: "a reference values file's signature does not verify" },
  reference_values_unsigned: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: 'a reference values file lacks the required signature' },
  reference_values_expired: { kind: 'config', message: '<name> expired', where: 'runtime', doc: 'loaded reference values passed their expiry (logged; requests naming them fail `reference_values_unavailable`)' },
  revocations_unreadable: { kind: 'config', message: 'revocation file <file> <why>', where: 'runtime', doc: 'a revocation state or shared file cannot be read or parsed (start-up fails; a reload keeps the last state)' },
  admin_token_unreadable: { kind: 'config', message: 'admin token file <file> <why>', where: 'start-up', doc: 'the admin token file is unreadable, insecure or too short' },
  state_dir_unusable: { kind: 'config', message: 'cannot <action> state directory <dir>: <why>; mount a writable volume there ..., or set state_dir in the config or ATTEST_SIDECAR_STATE_DIR ...', where: 'start-up', doc: 'the state directory cannot be created or written (missing volume, read-only root file system, a file in its place)' },
  audit_file_unwritable: { kind: 'config', message: 'cannot create audit file <file>: <why>; put it on a writable volume ...', where: 'start-up', doc: 'the audit log file (`log.audit`) cannot be created or opened' },
  listen_failed: { kind: 'config', message: '<listener> <address>: <why>', where: 'start-up', doc: 'a listener could not bind its address' },
  budget_store_config: { kind: 'config', message: 'invalid Redis URL for the budget store: <why>', where: 'start-up', doc: 'the budget store URL is invalid' },
  price_invalid: { kind: 'config', message: '<why>', where: 'start-up', doc: "a metered route's prices are invalid" },
  usage_invalid: { kind: 'config', message: '<name> must be an integer between 0 and <max>, got <value>', where: 'runtime', doc: 'a token count out of range' },
  identity_files_invalid: { kind: 'config', message: '<file>: <why>', where: 'start-up', doc: 'the SVID, key or bundle files are invalid at start-up' },
  files_source_invalid: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: 'an identity file changed to something invalid (the current identity stays)' },
  // The injector (`attest-sidecar inject`, `attest-sidecar injector`): a manifest or pod refused, not a request.
  injection_annotation_invalid: { kind: 'config', message: "annotation '<key>': <why>", doc: 'injector: an `attest-sidecar.io/*` annotation is unknown, missing (`config`) or has an invalid value; the pod is refused' },
  injection_conflict: { kind: 'config', message: '<what>: <why>', example: 'spec.containers[0].env HTTP_PROXY already exists: ...', doc: 'injector: the pod already has a volume or proxy environment variable the injection adds (a whole `attest-sidecar` container is left alone instead), or uses `hostNetwork`; the pod is refused' },
  injection_manifest_invalid: { kind: 'config', message: '<file> document <n>: <why>', doc: 'injector: a document is not YAML, not an object, or its pod template is malformed' },
  admission_review_invalid: { kind: 'config', message: '<why>', doc: 'injector webhook: the body of POST /mutate is not an AdmissionReview v1 request (answered 400 with `{"error"}`)' },
  files_source_read_failed: { kind: 'config', message: '<file>: <why>', where: 'runtime', doc: 'an identity file could not be read' },
  files_source_error: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'an identity file reload failed unexpectedly (the current identity stays)' },
  workload_endpoint_invalid: { kind: 'config', message: 'invalid Workload API endpoint <uri>: <why>', where: 'start-up', doc: 'the Workload API endpoint address is invalid' },
  workload_endpoint_missing: { kind: 'config', message: 'no Workload API endpoint configured and SPIFFE_ENDPOINT_SOCKET is not set', where: 'start-up', doc: 'no Workload API endpoint is configured' },
  x509_bundle_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: 'an X.509 trust bundle cannot be parsed' },
  jwt_bundle_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: 'a JWT bundle cannot be parsed' },
  spiffe_bundle_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: 'a SPIFFE bundle document cannot be parsed' },
  bundle_set_conflict: { kind: 'config', message: '<why>', where: 'runtime', doc: 'two bundles for the same trust domain conflict' },
  spiffe_id_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: 'a SPIFFE ID or trust domain (config, policy, CLI) is invalid' },
  x509_malformed: { kind: 'config', message: '<why>', where: 'runtime', doc: 'a certificate could not be parsed' },
  svid_cert_parse_failed: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'our SVID certificates cannot be parsed' },
  svid_key_parse_failed: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'our SVID private key cannot be parsed' },
  svid_no_certificates: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'our SVID holds no certificate' },
  svid_no_private_key: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'our SVID comes without a private key' },
  svid_root_path_id: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: "our SVID's SPIFFE ID has no path" },
  svid_intermediate_key_usage: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'an intermediate of our SVID lacks `keyCertSign`' },
  svid_unsupported_key: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: "our SVID's key type is not supported" },
  svid_key_mismatch: { kind: 'config', message: 'x509svid: <why>', where: 'runtime', doc: 'our private key does not match our SVID' },
  dev_issuer_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: "the dev issuer's options or request are invalid" },
  dev_ca_uninitialised: { kind: 'config', message: '<why>', where: 'runtime', doc: 'the dev CA was used before it was created' },
  dev_spire_failed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the development SPIRE deployment (dev mesh on SPIRE, tests) could not start or run a command' },
  dev_ca_wrong_trust_domain: { kind: 'config', message: '<why>', where: 'runtime', doc: 'the dev CA was asked for an ID outside its trust domain' },
  dev_ca_authority_invalid: { kind: 'config', message: '<why>', where: 'runtime', doc: 'a dev CA authority step (prepare, activate, taint, revoke) does not apply to that authority (SPIRE\'s texts)' },

  // Operational failures of parts (logged, counted or audited).
  svid_timeout: { kind: 'failure', message: '<why>', where: 'start-up', doc: 'no SVID arrived from the identity source in time' },
  svid_hint_not_found: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the Workload API sent no SVID with the configured hint' },
  source_closed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the identity source was closed while waited on' },
  workload_api_unavailable: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'the Workload API is unreachable (retried with backoff)' },
  workload_api_permission_denied: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'the SPIRE agent did not attest this workload' },
  workload_api_invalid_argument: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'the agent refused the request (fatal)' },
  workload_api_unimplemented: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'the socket does not serve the Workload API (fatal)' },
  workload_api_timeout: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'a Workload API call passed its deadline' },
  workload_api_error: { kind: 'failure', message: '<call>: <status>: <why>', where: 'runtime', doc: 'any other Workload API status' },
  workload_api_bad_response: { kind: 'failure', message: 'Workload API response rejected: <why>', where: 'runtime', doc: 'the Workload API answered with something invalid' },
  workload_api_stream_ended: { kind: 'failure', message: '<call>: stream ended by the server', where: 'runtime', doc: 'the Workload API ended its stream (reconnected)' },
  workload_api_closed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the Workload API client was closed' },
  jwt_svid_missing: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a JWT-SVID was asked for and none came' },
  jwt_svid_invalid: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a JWT-SVID does not parse or validate' },
  jwt_svid_audience_missing: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a JWT-SVID request named no audience' },
  jwt_svid_audience_mismatch: { kind: 'failure', message: 'FetchJWTSVID svids[<i>]: token audience <aud> does not hold the requested <missing>', where: 'runtime', doc: 'the Workload API returned a JWT-SVID whose `aud` lacks an audience that was asked for (refused)' },
  jwt_svid_subject_mismatch: { kind: 'failure', message: 'FetchJWTSVID svids[<i>]: <why>', where: 'runtime', doc: 'the Workload API returned a JWT-SVID whose `sub` is not its SPIFFE ID, or not the ID asked for (refused)' },
  dev_issuer_stopped: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the dev issuer was used after it stopped' },
  kds_unavailable: { kind: 'failure', message: '<why>', where: 'runtime', doc: "AMD's KDS could not be reached for a VCEK" },
  kds_timeout: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a KDS fetch passed its deadline' },
  kds_rate_limited: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the KDS answered 429' },
  kds_bad_answer: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the KDS answered with something that is not the VCEK asked for' },
  kds_busy: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'too many KDS fetches in flight; a cached VCEK is used if held' },
  kds_cache_refused: { kind: 'failure', message: 'cache file <name> <why>', where: 'runtime', doc: 'a VCEK cache file is a symlink, not regular, oversized or writable by others' },
  kds_cache_unreadable: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a VCEK cache file cannot be read' },
  kds_cache_write_failed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a fetched VCEK could not be cached (it is still used)' },
  tpm_command_failed: { kind: 'failure', message: 'TPM2_<command> failed: <rc name> (<detail>)', where: 'runtime', doc: 'a TPM command returned an error code (attester side)' },
  tpm_transport_failed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the TPM could not be reached or answered garbage (attester side)' },
  tpm_bad_request: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a TPM command was asked with invalid input (attester side)' },
  tsm_unavailable: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'no configfs-tsm, no permission, or the provider went away (attester side)' },
  tsm_unsupported_provider: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the configfs-tsm provider is not one this sidecar reads (attester side)' },
  tsm_busy: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the kernel answered EBUSY (attester side)' },
  tsm_race: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the report generation kept changing under us (attester side)' },
  tsm_bad_request: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'bad user data or privilege level (attester side)' },
  tsm_failed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'the kernel refused the report for another reason (attester side)' },
  audit_tail_unreadable: { kind: 'failure', message: '<why>', where: 'start-up', doc: "the audit file's last line cannot be read to continue its chain" },
  budget_adjust_failed: { kind: 'failure', message: '<why>', where: 'runtime', doc: 'a metered response cost could not replace its reservation (the reservation stays charged)' },
  usage_missing: { kind: 'failure', message: '<why>', where: 'outbound', doc: 'a metered response carried no token usage (the reservation stays charged)' },
  usage_unreadable: { kind: 'failure', message: '<why>', where: 'outbound', doc: "a metered response's usage could not be read" },
  usage_too_large: { kind: 'failure', message: '<why>', where: 'outbound', doc: 'a metered response body or event exceeds the meter bound' },
  usage_encoding_unsupported: { kind: 'failure', message: '<why>', where: 'outbound', doc: "a metered response's content-encoding cannot be decoded" },
  response_incomplete: { kind: 'failure', message: '<why>', where: 'outbound', doc: 'a metered response ended early' },
  meter_failed: { kind: 'failure', message: '<why>', where: 'outbound', doc: 'the usage meter failed (the reservation stays charged)' },

  // The kill switch's SPIRE step (`attest-sidecar kill|restore --spire-server-socket`): the CLI reports them.
  spire_server_socket_invalid: { kind: 'config', message: 'invalid SPIRE server socket <uri>: <why>', where: 'admin', doc: '`--spire-server-socket` is not `unix:///absolute/path`' },
  spire_entries_file_invalid: { kind: 'config', message: '<file>: <why>', where: 'admin', doc: "the saved entries file cannot be read, is not a saved-entries file, or holds another agent's entries" },
  spire_entries_file_missing: { kind: 'config', message: 'no saved SPIRE entries for <id> at <file>', where: 'admin', doc: '`restore --spire-server-socket` found no entries file for the agent (the sidecar revocation is not lifted)' },
  spire_entries_file_write_failed: { kind: 'failure', message: 'cannot save the entries to <file>: <why>', where: 'admin', doc: 'the entries could not be saved before deletion, so none were deleted' },
  spire_server_unavailable: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: "the SPIRE server's admin socket cannot be reached (not running, wrong path, not a gRPC server)" },
  spire_server_timeout: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: 'a SPIRE server API call passed its deadline' },
  spire_server_unimplemented: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: "the socket serves gRPC but not the SPIRE server's Entry API (an agent's Workload API socket?)" },
  spire_server_permission_denied: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: 'the SPIRE server refused the caller (not local and not an admin)' },
  spire_server_invalid_argument: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: "the SPIRE server refused the request (e.g. a SPIFFE ID outside the server's trust domain)" },
  spire_server_error: { kind: 'failure', message: '<call>: <status>: <why>', where: 'admin', doc: 'any other SPIRE server API status' },
  spire_server_bad_response: { kind: 'failure', message: '<call>: <why>', where: 'admin', doc: 'the SPIRE server answered something the client cannot use (a result count that does not match, too many pages)' },
  spire_entry_delete_failed: { kind: 'failure', message: 'entry <id>: <status>: <why>', where: 'admin', doc: 'the SPIRE server refused to delete one entry (reported per entry; the others are deleted)' },
  spire_entry_create_failed: { kind: 'failure', message: 'entry <id>: <status>: <why>', where: 'admin', doc: 'the SPIRE server refused to re-create one saved entry (reported per entry; the file is kept)' },

  // Findings of `attest-sidecar audit verify`.
  malformed_line: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'a line is empty, not JSON, not an audit record, or has invalid chain fields' },
  unchained_record: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'a record without `seq`/`prev` inside a hash chain (inserted?)' },
  seq_gap: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'records are missing between two sequence numbers' },
  seq_out_of_order: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'records moved, duplicated or inserted' },
  prev_mismatch: { kind: 'audit', message: '<why>', where: 'audit verify', doc: "a record's `prev` is not the hash of the record before it" },
  chain_restart: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'a second genesis record in one chain' },
  chain_start_missing: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'a chain does not begin with its genesis record' },
  line_too_long: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'a line is longer than the bound and is not parsed' },
  anchor_missing: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'the expected head is not in the log: records were removed from the end' },
  anchor_mismatch: { kind: 'audit', message: '<why>', where: 'audit verify', doc: 'the record at the expected head does not hash to it: it was rewritten' },

  // Outcomes (not refusals).
  allowed: { kind: 'outcome', message: '', where: 'inbound', doc: 'the request was allowed and forwarded to the app' },
  forwarded: { kind: 'outcome', message: '', where: 'outbound', doc: 'the request was forwarded upstream' },
  revoked: { kind: 'outcome', message: '', where: 'runtime', doc: 'a revocation change closed connections (audit `revocation`)' },
  revocations_changed: { kind: 'outcome', message: '', where: 'runtime', doc: 'the revocation state changed without closing a connection (audit `revocation`)' },
  kill: { kind: 'outcome', message: '', where: 'admin', doc: 'an admin revoked one identity (audit `admin_action`)' },
  killall: { kind: 'outcome', message: '', where: 'admin', doc: 'an admin stopped all traffic (audit `admin_action`)' },
  restore: { kind: 'outcome', message: '', where: 'admin', doc: 'an admin lifted revocations (audit `admin_action`)' },
  chain_genesis: { kind: 'outcome', message: '', where: 'runtime', doc: 'the audit sink started a hash chain (audit `audit_chain_start`)' },
  unchained_predecessor: { kind: 'outcome', message: '', where: 'runtime', doc: 'a chain started after a last line that is not a chained record' },
  torn_tail: { kind: 'outcome', message: '', where: 'runtime', doc: 'the audit sink dropped a torn last line at start (audit `audit_tail_repaired`); `audit verify` reports one as a finding' },
  reloaded: { kind: 'outcome', message: '', where: 'runtime', doc: 'SIGHUP: a part (policy, credentials, revocation lists, reference values, file identity) re-read and changed (audit `reload`)' },
  reload_unchanged: { kind: 'outcome', message: '', where: 'runtime', doc: 'SIGHUP: a part re-read with nothing changed (audit `reload`)' },
  drained: { kind: 'outcome', message: '', where: 'runtime', doc: 'SIGTERM: every request in progress finished within `drain_timeout`' },
  drain_timeout: { kind: 'outcome', message: '', where: 'runtime', doc: 'SIGTERM: requests still in progress at `drain_timeout` were cut' },
  aggregated_overflow: { kind: 'outcome', message: '', where: 'runtime', doc: 'aggregated refusals of too many distinct kinds in one window, counted together' },
} as const satisfies Record<string, ReasonSpec>;

export type ReasonCode = keyof typeof REASONS;

/** The codes of one kind (e.g. `ReasonCodeOf<'attestation'>`: what a verifier may fail with). */
export type ReasonCodeOf<K extends ReasonKind> = { [C in ReasonCode]: (typeof REASONS)[C]['kind'] extends K ? C : never }[ReasonCode];

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

/** The codes whose message has no `<placeholder>`: their refusal is the same for every request. */
export type FixedReasonCode = {
  [C in ReasonCode]: (typeof REASONS)[C]['message'] extends `${string}<${string}>${string}` ? never : C;
}[ReasonCode];

const FIXED = new Map<ReasonCode, Refusal>();

/**
 * The refusal for `reason` with its catalogue message: one frozen object for the process's life
 * (the deny path allocates nothing). Codes whose message names something take `refuse`.
 */
export function refusal(reason: FixedReasonCode): Refusal {
  let fixed = FIXED.get(reason);
  if (fixed === undefined) {
    fixed = refuse(reason, REASONS[reason].message);
    FIXED.set(reason, fixed);
  }
  return fixed;
}

/** A refusal for `reason` whose message names what was refused. */
export function refuse(reason: ReasonCode, error: string, headers?: Readonly<Record<string, string>>): Refusal {
  const spec: ReasonSpec = REASONS[reason];
  const built: Refusal = {
    reason,
    status: spec.status ?? 500,
    error,
    body: JSON.stringify({ error }),
    close: spec.close ?? false,
    decision: spec.decision ?? 'deny',
    ...(headers ? { headers } : {}),
  };
  return Object.freeze(built);
}
