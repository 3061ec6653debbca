/**
 * How many header fields a request may carry (see proxy/request-headers.ts). Dependency-free so the
 * config loader can share the defaults and the range.
 */

/** Request header fields an inbound request may carry by default (Envoy's default too). */
export const DEFAULT_MAX_REQUEST_HEADERS = 100;
/**
 * The outbound proxy's default: 10 below the inbound default, leaving room for the fields it adds
 * (evidence or its id, nonce, request id, injected credentials) so a peer never refuses what it sent.
 */
export const DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS = 90;
/**
 * The configurable range. Node's HTTP parser keeps about 1,000 fields of a request and drops the
 * rest silently, so a limit must stay well below that for an excess to be seen at all.
 */
export const REQUEST_HEADERS_SETTING = Object.freeze({ min: 16, max: 500 });
