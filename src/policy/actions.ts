/**
 * Inbound action mapping: (method, canonical path) -> the configured action.
 *
 * Matching is on the raw (still percent-encoded) path, so `canonicalRequestPath` first
 * refuses every form an app could decode or normalise into a different path than the one
 * matched (dot segments, `//`, encoded `/ \ . %`, backslashes, ...). The proxy answers 400
 * for those and forwards exactly the path that was matched.
 */
import { SidecarError } from '../errors.js';
import type { ActionMappingConfig } from '../config/types.js';

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

function matches(p: CompiledPattern, method: string, segs: readonly string[]): boolean {
  if (p.method !== '*' && p.method !== method) return false;
  const n = p.segments.length;
  if (p.rest ? segs.length <= n : segs.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const want = p.segments[i];
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
const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /^[A-Za-z0-9\-_~]$/; // '.' is reported as an encoded dot above

/**
 * The request-target's path, if it is canonical; the query is split off (and only checked
 * for control and non-ASCII characters). Rejects, rather than normalises, anything an app
 * might interpret differently from the matcher.
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
      const hex = path.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return { ok: false, error: 'malformed percent-escape in path' };
      const lower = hex.toLowerCase();
      const forbidden = FORBIDDEN_ESCAPES[lower];
      if (forbidden) return { ok: false, error: `${forbidden} (%${hex}) in path` };
      const code = parseInt(hex, 16);
      if (code < 0x20 || code === 0x7f) return { ok: false, error: `encoded control character (%${hex}) in path` };
      if (code < 0x80 && UNRESERVED.test(String.fromCharCode(code))) {
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
