/**
 * Inbound action mapping: (method, canonical path) -> the configured action.
 *
 * Matching is on the raw (still percent-encoded) path, so `canonicalRequestPath` first
 * refuses every form an app could decode or normalise into a different path than the one
 * matched (dot segments, `//`, encoded `/ \ . %`, backslashes, percent-encoded bytes that are
 * not shortest-form UTF-8, ...). The proxy answers 400 for those and forwards exactly the path
 * that was matched.
 */
import { SidecarError } from '../errors.js';

/** One `inbound.actions` entry: which requests are which action. */
export interface ActionMappingConfig {
  method: string; // upper-case, or '*' for any
  path: string; // '/agents/:id/status', '*' suffix allowed ('/files/*')
  action: string;
  resource?: string;
  permission?: string;
  /** Charged to the calling agent's budget when the request is forwarded. */
  costUsd?: number;
}

export type ActionMatcher = (method: string, path: string) => ActionMappingConfig | undefined;

interface CompiledPattern {
  index: number;
  method: string; // '*' or upper-case
  /** Literal segment text, or null for a `:param` segment. */
  segments: (string | null)[];
  /** Ends in `/*`: matches when at least one more segment (possibly empty) follows. */
  rest: boolean;
  mapping: ActionMappingConfig;
}

const PARAM = /^:[A-Za-z_][A-Za-z0-9_]*$/;

/** Why `pattern` is not a valid mapping path, or undefined when it is. */
export function actionPathError(pattern: string): string | undefined {
  if (!pattern.startsWith('/')) return "must start with '/'";
  const body = pattern.endsWith('/*') ? pattern.slice(0, -2) : pattern;
  if (body === '') return undefined; // '/*'
  const checked = canonicalRequestPath(body);
  if (!checked.ok) return checked.error;
  if (body.includes('?')) return 'must not contain a query';
  for (const seg of body.slice(1).split('/')) {
    if (seg.includes('*')) return "'*' is only allowed as the whole last segment ('/files/*')";
    if (seg.startsWith(':') && !PARAM.test(seg)) return `invalid parameter segment '${seg}' (use ':name')`;
  }
  return undefined;
}

function compilePattern(mapping: ActionMappingConfig, index: number): CompiledPattern {
  const error = actionPathError(mapping.path);
  if (error) throw new SidecarError('config_invalid', `action mapping path '${mapping.path}': ${error}`);
  const rest = mapping.path.endsWith('/*');
  const body = rest ? mapping.path.slice(0, -2) : mapping.path;
  const segments = rest && body === '' ? [] : body.slice(1).split('/').map((s) => (s.startsWith(':') ? null : s));
  return { index, method: mapping.method === '*' ? '*' : mapping.method.toUpperCase(), segments, rest, mapping };
}

function matches(pattern: CompiledPattern, method: string, segs: readonly string[]): boolean {
  if (pattern.method !== '*' && pattern.method !== method) return false;
  const n = pattern.segments.length;
  if (pattern.rest ? segs.length <= n : segs.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const want = pattern.segments[i];
    const got = segs[i]!;
    if (want === null ? got === '' : want !== got) return false;
  }
  return true;
}

/**
 * First match wins. Patterns are bucketed by their first literal segment; a bucket also
 * holds (in configuration order) the patterns whose first segment is a parameter or `*`,
 * so a lookup only scans candidates that could match and still honours "first wins".
 */
export function compileActionMatcher(mappings: readonly ActionMappingConfig[]): ActionMatcher {
  const patterns = mappings.map(compilePattern);
  const isWild = (p: CompiledPattern) => p.segments.length === 0 || p.segments[0] === null;
  const wild = patterns.filter(isWild);
  const buckets = new Map<string, CompiledPattern[]>();
  for (const p of patterns) {
    if (isWild(p)) continue;
    const first = p.segments[0]!;
    if (!buckets.has(first)) {
      buckets.set(first, patterns.filter((q) => isWild(q) || q.segments[0] === first));
    }
  }
  return (method, path) => {
    if (path.length === 0 || path.charCodeAt(0) !== 0x2f) return undefined;
    const segs = path.slice(1).split('/');
    const candidates = buckets.get(segs[0]!) ?? wild;
    for (const p of candidates) if (matches(p, method, segs)) return p.mapping;
    return undefined;
  };
}

export type CanonicalPath = { ok: true; path: string; /** '' or '?...' */ search: string } | { ok: false; error: string };

/** Percent-escapes that decode to a character that changes how a path is split or resolved. */
const FORBIDDEN_ESCAPES: Record<string, string> = {
  '2f': "encoded '/'",
  '5c': "encoded '\\'",
  '2e': "encoded '.'",
  '25': "encoded '%'",
};

/** RFC 3986 pchar plus '/': unreserved, sub-delims, ':', '@' and '%' (escapes checked separately). */
const PATH_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%") {
  PATH_CHAR[c.charCodeAt(0)] = 1;
}
/** Value of a hex digit by character code; -1 for anything else. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let d = 0; d < 16; d++) {
  HEX_VALUE['0123456789abcdef'.charCodeAt(d)] = d;
  HEX_VALUE['0123456789ABCDEF'.charCodeAt(d)] = d;
}
const UNRESERVED = /^[A-Za-z0-9\-_~]$/; // '.' is reported as an encoded dot above

/** The byte a `%XX` escape at `i` encodes, or -1 when there is no well-formed escape there. */
function escapedByte(path: string, i: number): number {
  if (path.charCodeAt(i) !== 0x25 || i + 2 >= path.length) return -1;
  const hi = HEX_VALUE[path.charCodeAt(i + 1)] ?? -1;
  const lo = HEX_VALUE[path.charCodeAt(i + 2)] ?? -1;
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

/** The text of up to `n` consecutive well-formed escapes at `i` (for messages: never other input). */
function escapesAt(path: string, i: number, n: number): string {
  let end = i;
  while (n-- > 0 && escapedByte(path, end) >= 0) end += 3;
  return path.slice(i, end);
}

/**
 * Checks the percent-encoded UTF-8 sequence whose lead byte `lead` is escaped at `i`: it must
 * be the shortest form of a scalar value (RFC 3629 §3: no overlongs, which a lenient decoder
 * reads as '.', '/' or a backslash; no UTF-16 surrogates; nothing above U+10FFFF) and must not be
 * a C1 control. Returns the index just after the sequence, or why it is refused.
 */
function utf8SequenceEnd(path: string, i: number, lead: number): number | string {
  let more: number;
  let min = 0x80;
  let max = 0xbf;
  let below = '';
  let above = '';
  if (lead < 0xc0) return `stray UTF-8 continuation byte (${escapesAt(path, i, 1)}) in path`;
  if (lead < 0xc2) return `overlong UTF-8 encoding (${escapesAt(path, i, 2)}) in path`;
  if (lead < 0xe0) more = 1;
  else if (lead < 0xf0) {
    more = 2;
    if (lead === 0xe0) (min = 0xa0), (below = 'overlong UTF-8 encoding');
    if (lead === 0xed) (max = 0x9f), (above = 'encoded UTF-16 surrogate');
  } else if (lead < 0xf5) {
    more = 3;
    if (lead === 0xf0) (min = 0x90), (below = 'overlong UTF-8 encoding');
    if (lead === 0xf4) (max = 0x8f), (above = 'UTF-8 beyond U+10FFFF');
  } else {
    return `invalid UTF-8 byte (${escapesAt(path, i, 1)}) in path`;
  }
  let end = i + 3;
  for (let k = 0; k < more; k++, end += 3) {
    const b = escapedByte(path, end);
    if (b < 0x80 || b > 0xbf) {
      if (b < 0 && path.charCodeAt(end) === 0x25) return 'malformed percent-escape in path';
      return `truncated UTF-8 sequence (${path.slice(i, end)}) in path`;
    }
    if (k === 0 && (b < min || b > max)) return `${b < min ? below : above} (${escapesAt(path, i, more + 1)}) in path`;
    if (k === 0 && lead === 0xc2 && b < 0xa0) return `encoded control character (${escapesAt(path, i, 2)}) in path`;
  }
  return end;
}

/**
 * The request-target's path, if it is canonical; the query is split off (and only checked
 * for control and non-ASCII characters). Rejects, rather than normalises, anything an app
 * might interpret differently from the matcher. Linear in the target's length.
 */
export function canonicalRequestPath(rawUrl: string): CanonicalPath {
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const search = q < 0 ? '' : rawUrl.slice(q);
  if (path.length === 0 || path.charCodeAt(0) !== 0x2f) return { ok: false, error: "path must start with '/'" };
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return { ok: false, error: 'control character in path' };
    if (c > 0x7f) return { ok: false, error: 'non-ASCII character in path' };
    if (c === 0x5c) return { ok: false, error: 'backslash in path' };
    if (!PATH_CHAR[c]) return { ok: false, error: `character '${path[i]}' not allowed in path` };
    if (c === 0x25) {
      const code = escapedByte(path, i);
      if (code < 0) return { ok: false, error: 'malformed percent-escape in path' };
      if (code >= 0x80) {
        const end = utf8SequenceEnd(path, i, code);
        if (typeof end === 'string') return { ok: false, error: end };
        i = end - 1;
        continue;
      }
      const hex = path.slice(i + 1, i + 3);
      const forbidden = FORBIDDEN_ESCAPES[hex.toLowerCase()];
      if (forbidden) return { ok: false, error: `${forbidden} (%${hex}) in path` };
      if (code < 0x20 || code === 0x7f) return { ok: false, error: `encoded control character (%${hex}) in path` };
      if (UNRESERVED.test(String.fromCharCode(code))) {
        return { ok: false, error: `needlessly encoded character (%${hex}) in path` };
      }
      i += 2;
    }
  }
  // Segments, without allocating: '//' (empty segment) and '.'/'..' (also before ';' parameters,
  // which some servers drop before resolving: the `/..;/` trick).
  let segStart = 1;
  const hasSemi = path.includes(';');
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path.charCodeAt(i) !== 0x2f) continue;
    const semi = hasSemi ? path.indexOf(';', segStart) : -1;
    const end = semi !== -1 && semi < i ? semi : i;
    const len = end - segStart;
    if (i - segStart === 0 && i < path.length) return { ok: false, error: "empty segment ('//') in path" };
    if ((len === 1 && path.charCodeAt(segStart) === 0x2e) || (len === 2 && path.charCodeAt(segStart) === 0x2e && path.charCodeAt(segStart + 1) === 0x2e)) {
      return { ok: false, error: "dot segment ('.' or '..') in path" };
    }
    segStart = i + 1;
  }
  for (let i = 0; i < search.length; i++) {
    const c = search.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return { ok: false, error: 'control, space or non-ASCII character in query' };
    if (c === 0x23) return { ok: false, error: "fragment ('#') in request target" };
  }
  return { ok: true, path, search };
}
