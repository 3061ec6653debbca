/**
 * Header handling for both proxy directions (RFC 9110 §7.6.1).
 *
 * Works on Node's `rawHeaders` (flat [name, value, ...], original case, duplicates kept) and
 * produces the flat array undici accepts, so the hot path makes one pass and one array.
 */

/** Hop-by-hop fields that never cross a proxy, plus proxy credentials meant for us. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** Fields whose values identify the caller; a client may never supply them. */
export const IDENTITY_HEADERS: ReadonlySet<string> = new Set(['x-forwarded-client-cert', 'x-spiffe-id']);

/** Names listed in Connection headers (they are hop-by-hop too); empty when none. */
function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      for (const token of raw[i + 1]!.split(',')) {
        const name = token.trim().toLowerCase();
        if (name) (listed ??= new Set()).add(name);
      }
    }
  }
  return listed;
}

/**
 * Copies request headers for the next hop: drops hop-by-hop fields, fields named in
 * Connection, and every name in `drop` (lower-case). Appends `extra` pairs at the end.
 */
export function forwardRequestHeaders(
  raw: readonly string[],
  drop: ReadonlySet<string> | undefined,
  extra?: readonly string[],
): string[] {
  const listed = connectionListed(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed?.has(lower) || drop?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  if (extra) for (const v of extra) out.push(v);
  return out;
}

/**
 * Filters response headers (undici's parsed object form) for the downstream client.
 * Returns a plain object suitable for `res.writeHead`.
 */
export function forwardResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const connection = headers['connection'];
  let listed: Set<string> | undefined;
  if (connection) {
    for (const token of String(connection).split(',')) {
      const name = token.trim().toLowerCase();
      if (name) (listed ??= new Set()).add(name);
    }
  }
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** True when the request carries fields only a browser sends (see outbound proxy). */
export function isBrowserRequest(headers: Record<string, string | string[] | undefined>): boolean {
  return (
    headers['origin'] !== undefined ||
    headers['sec-fetch-site'] !== undefined ||
    headers['sec-fetch-mode'] !== undefined ||
    headers['sec-fetch-dest'] !== undefined
  );
}

/**
 * Envoy's x-forwarded-client-cert element for a verified peer:
 * `By=<our SPIFFE ID>;Hash=<hex sha256 of the peer leaf DER>;URI=<peer SPIFFE ID>`.
 * SPIFFE IDs cannot contain `;`, `,` or `"`, so no quoting is needed.
 */
export function xfccValue(ownId: string, peerLeafSha256Hex: string, peerId: string): string {
  return `By=${ownId};Hash=${peerLeafSha256Hex};URI=${peerId}`;
}
