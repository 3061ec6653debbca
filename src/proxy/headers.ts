/**
 * Header handling for both proxy directions (RFC 9110 §7.6.1).
 *
 * Works on flat [name, value, ...] lists in original case with duplicates kept: Node's
 * `rawHeaders` into the array undici accepts (requests), undici's raw Buffers into the list
 * `writeHead` accepts (responses), so the hot path makes one pass and one array each way.
 */

/**
 * Hop-by-hop fields that never cross a proxy, plus proxy credentials meant for us, plus
 * Expect: each sidecar answers `100-continue` itself once the request is admitted.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'expect',
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

/**
 * Names listed in Connection headers (hop-by-hop too), beyond keep-alive/close; undefined when
 * there are none (the common case: then no second pass is needed).
 */
export function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') listed = addConnectionListed(raw[i + 1]!, listed);
  }
  return listed;
}

/**
 * Adds the names a Connection value lists (lower-case, without keep-alive and close) to
 * `listed`. Nearly every message carries exactly `keep-alive` or `close`: those are answered
 * without splitting.
 */
function addConnectionListed(value: string, listed: Set<string> | undefined): Set<string> | undefined {
  if (value === 'keep-alive' || value === 'close') return listed;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name && name !== 'keep-alive' && name !== 'close') (listed ??= new Set()).add(name);
  }
  return listed;
}

/**
 * Lengths of every name a filter can drop (hop-by-hop + the caller's drop set): a header whose
 * name has another length cannot match, so it skips the lower-casing. Computed once per set.
 */
const HOP_LENGTHS = lengthsOf(HOP_BY_HOP);
const lengthsCache = new WeakMap<ReadonlySet<string>, Uint8Array>();

function lengthsOf(names: Iterable<string>, base?: Uint8Array): Uint8Array {
  const out = new Uint8Array(256);
  if (base) out.set(base);
  for (const n of names) out[Math.min(n.length, 255)] = 1;
  return out;
}

function filteredLengths(drop: ReadonlySet<string> | undefined): Uint8Array {
  if (!drop) return HOP_LENGTHS;
  let lengths = lengthsCache.get(drop);
  if (!lengths) lengthsCache.set(drop, (lengths = lengthsOf(drop, HOP_LENGTHS)));
  return lengths;
}

/**
 * Copies request headers for the next hop: drops hop-by-hop fields, fields named in
 * Connection, and every name in `drop` (lower-case; pass the same Set each time). The `extra`
 * pairs (the sidecar's own fields) go first, so a receiver that keeps only the first N fields
 * still has them.
 */
export function forwardRequestHeaders(
  raw: readonly string[],
  drop: ReadonlySet<string> | undefined,
  extra?: readonly string[],
): string[] {
  const listed = connectionListed(raw);
  const lengths = filteredLengths(drop);
  const out: string[] = extra ? extra.slice() : [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (lengths[Math.min(name.length, 255)] === 1 || listed !== undefined) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || listed?.has(lower) || drop?.has(lower)) continue;
    }
    out.push(name, raw[i + 1]!);
  }
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
  // keep-alive and close need no listing: both are hop-by-hop names already.
  const listed = connection ? addConnectionListed(String(connection), undefined) : undefined;
  const out: Record<string, string | string[]> = Object.create(null); // header names are the peer's
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** A response header name known in advance (see KNOWN_NAMES). */
interface KnownName {
  readonly bytes: Uint8Array;
  /** The name in this spelling: a constant string, so relaying it allocates nothing. */
  readonly name: string;
  readonly lower: string;
  readonly hop: boolean;
}

/**
 * Names nearly every upstream response carries, in the spellings servers send (Node and Go
 * capitalise the ones they add, most frameworks write lower case). A known name is relayed as
 * a constant string, with no Buffer-to-string copy, and its hop-by-hop status is known without
 * lower-casing it. Indexed by length; anything else takes the general path.
 */
const KNOWN_NAMES: (KnownName[] | undefined)[] = [];
for (const lower of [
  'date', 'content-type', 'content-length', 'connection', 'keep-alive', 'transfer-encoding',
  'cache-control', 'server', 'etag', 'last-modified', 'vary', 'location', 'set-cookie',
  'content-encoding', 'expires', 'x-content-type-options', 'access-control-allow-origin',
]) {
  const capitalised = lower.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
  for (const name of lower === 'etag' ? [lower, capitalised, 'ETag'] : [lower, capitalised]) {
    const list = (KNOWN_NAMES[name.length] ??= []);
    list.push({ bytes: Buffer.from(name, 'latin1'), name, lower, hop: HOP_BY_HOP.has(lower) });
  }
}

function knownName(raw: Uint8Array): KnownName | undefined {
  const list = KNOWN_NAMES[raw.length];
  if (list === undefined) return undefined;
  next: for (let k = 0; k < list.length; k++) {
    const bytes = list[k]!.bytes;
    for (let i = 0; i < bytes.length; i++) if (raw[i] !== bytes[i]) continue next;
    return list[k];
  }
  return undefined;
}

const KEEP_ALIVE = Buffer.from('keep-alive', 'latin1');
const CLOSE = Buffer.from('close', 'latin1');

/** `Connection: keep-alive` or `close` (lists nothing more), compared without a string copy. */
function isPlainConnectionValue(raw: Buffer): boolean {
  return raw.equals(KEEP_ALIVE) || raw.equals(CLOSE);
}

/**
 * undici's raw response headers (flat [name, value, ...] Buffers) as the flat string list
 * `writeHead` accepts, without hop-by-hop fields and those the Connection header names. Names
 * keep their case; values are latin1, as undici decodes them.
 */
export function responseHeaderList(raw: readonly Buffer[]): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 10) continue;
    const lower = knownName(name)?.lower ?? name.toString('latin1').toLowerCase();
    if (lower === 'connection' && !isPlainConnectionValue(raw[i + 1]!)) {
      listed = addConnectionListed(raw[i + 1]!.toString('latin1'), listed);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const known = knownName(raw[i]!);
    let name: string;
    if (known !== undefined) {
      if (known.hop || listed?.has(known.lower)) continue;
      name = known.name;
    } else {
      name = raw[i]!.toString('latin1');
      if (HOP_LENGTHS[Math.min(name.length, 255)] === 1 || listed !== undefined) {
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower) || listed?.has(lower)) continue;
      }
    }
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  return out;
}

/** The object form (lower-case names, repeated fields as arrays) for intercepts and transforms. */
export function responseHeaderObject(raw: readonly Buffer[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (typeof prev === 'string') out[name] = [prev, value];
    else prev.push(value);
  }
  return out;
}

/**
 * Request fields browsers send and HTTP client libraries do not. Chromium sends neither Origin
 * nor Sec-Fetch-* on a plain-http subresource GET (img, script, iframe, prefetch, no-cors
 * fetch) to a non-secure origin, so those alone miss what a web page can make a proxied browser
 * send. Sec-Fetch-Mode alone is not here: Node's fetch (undici) sends `sec-fetch-mode: cors`.
 */
const BROWSER_ONLY_HEADERS = [
  'origin',
  'sec-fetch-site',
  'sec-fetch-dest',
  'sec-fetch-user',
  'sec-purpose',
  'purpose',
  'upgrade-insecure-requests',
  'sec-ch-ua',
] as const;

/**
 * True when the request comes from a web browser: a browser-only field, or a browser's
 * User-Agent. Every browser's starts with `Mozilla/` (a page cannot change it, not even on a
 * no-cors request); curl, Python requests, Go, undici, the model SDKs send their own names.
 */
export function isBrowserRequest(headers: Record<string, string | string[] | undefined>): boolean {
  const userAgent = headers['user-agent'];
  if (typeof userAgent === 'string' && userAgent.startsWith('Mozilla/')) return true;
  for (const name of BROWSER_ONLY_HEADERS) if (headers[name] !== undefined) return true;
  return false;
}

/**
 * Envoy's x-forwarded-client-cert element for a verified peer:
 * `By=<our SPIFFE ID>;Hash=<hex sha256 of the peer leaf DER>;URI=<peer SPIFFE ID>`.
 * SPIFFE IDs cannot contain `;`, `,` or `"`, so no quoting is needed.
 */
export function xfccValue(ownId: string, peerLeafSha256Hex: string, peerId: string): string {
  return `By=${ownId};Hash=${peerLeafSha256Hex};URI=${peerId}`;
}
