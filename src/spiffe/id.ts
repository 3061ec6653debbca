/**
 * SPIFFE IDs and trust domains, parsed with exactly the rules of go-spiffe v2's `spiffeid`
 * package (default build): `spiffe://<trust-domain><path>`, trust domain [a-z0-9._-],
 * path segments [a-zA-Z0-9._-], no empty / dot segments, no trailing slash, no
 * percent-decoding. Plus the SPIFFE-ID standard's length limits (trust domain <= 255
 * bytes, whole URI <= 2048 bytes). Only ASCII is ever valid, so characters == bytes.
 */
import { SidecarError } from '../errors.js';

export type SpiffeIdErrorKind =
  | 'EMPTY'
  | 'SCHEME'
  | 'TD_MISSING'
  | 'TD_CHAR'
  | 'PATH_CHAR'
  | 'EMPTY_SEGMENT'
  | 'DOT_SEGMENT'
  | 'TRAILING_SLASH'
  | 'NO_LEADING_SLASH'
  | 'ZERO_ID'
  | 'TD_TOO_LONG'
  | 'TOO_LONG';

/** Maximum trust domain length (SPIFFE-ID standard §2.1). */
export const MAX_TRUST_DOMAIN_LENGTH = 255;
/** Maximum length of a whole SPIFFE ID URI (SPIFFE-ID standard §2.3). */
export const MAX_SPIFFE_ID_LENGTH = 2048;

const SCHEME_PREFIX = 'spiffe://';

const KIND_MESSAGES: Record<Exclude<SpiffeIdErrorKind, 'ZERO_ID'>, string> = {
  EMPTY: 'cannot be empty',
  SCHEME: 'scheme is missing or invalid',
  TD_MISSING: 'trust domain is missing',
  TD_CHAR: 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
  PATH_CHAR: 'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
  EMPTY_SEGMENT: 'path cannot contain empty segments',
  DOT_SEGMENT: 'path cannot contain dot segments',
  TRAILING_SLASH: 'path cannot have a trailing slash',
  NO_LEADING_SLASH: 'path must have a leading slash',
  TD_TOO_LONG: `trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} bytes`,
  TOO_LONG: `SPIFFE ID is longer than ${MAX_SPIFFE_ID_LENGTH} bytes`,
};

/** Invalid SPIFFE ID / trust domain / path. `kind` says which rule failed. */
export class SpiffeIdError extends SidecarError {
  readonly kind: SpiffeIdErrorKind;

  constructor(kind: SpiffeIdErrorKind, message?: string) {
    super('spiffe_id_invalid', message ?? (kind === 'ZERO_ID' ? 'zero ID value' : KIND_MESSAGES[kind]));
    this.kind = kind;
  }
}

function fail(kind: Exclude<SpiffeIdErrorKind, 'ZERO_ID'>, input?: string): never {
  const base = KIND_MESSAGES[kind];
  throw new SpiffeIdError(kind, input === undefined ? base : `${base}: ${quoteInput(input)}`);
}

/** Quote untrusted input for a message: JSON escaping, truncated. */
function quoteInput(text: string): string {
  return JSON.stringify(text.length > 256 ? `${text.slice(0, 256)}…` : text);
}

function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2e || c === 0x2d || c === 0x5f // . - _
  );
}

function isPathSegmentChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e || c === 0x2d || c === 0x5f
  );
}

export class TrustDomain {
  readonly name: string;

  /** Use parseTrustDomain(); the constructor trusts its (already validated) input. */
  private constructor(name: string) {
    this.name = name;
  }

  /** @internal name already validated */
  static fromValidatedName(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The zero trust domain (go-spiffe's `TrustDomain{}`): name '' and ID string ''. */
  static zero(): TrustDomain {
    return new TrustDomain('');
  }

  isZero(): boolean {
    return this.name === '';
  }

  /** 'spiffe://name' ('' for the zero trust domain). */
  idString(): string {
    return this.isZero() ? '' : SCHEME_PREFIX + this.name;
  }

  /** The SPIFFE ID of the trust domain itself (empty path). */
  id(): SpiffeId {
    if (this.isZero()) throw new SpiffeIdError('ZERO_ID', 'cannot build an ID from the zero trust domain');
    return SpiffeId.fromValidated(this, '');
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }

  equals(o: TrustDomain): boolean {
    return this.name === o.name;
  }

  /** Lexical order by name (-1, 0, 1). */
  compare(o: TrustDomain): number {
    return this.name < o.name ? -1 : this.name > o.name ? 1 : 0;
  }
}

export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** '' or '/seg[/seg...]' */
  readonly path: string;

  private constructor(td: TrustDomain, path: string) {
    this.trustDomain = td;
    this.path = path;
  }

  /** @internal inputs already validated */
  static fromValidated(td: TrustDomain, path: string): SpiffeId {
    checkTotalLength(td, path);
    return new SpiffeId(td, path);
  }

  /** The zero ID (go-spiffe's `ID{}`): toString() is '' and it is a member of no trust domain. */
  static zero(): SpiffeId {
    return new SpiffeId(TrustDomain.zero(), '');
  }

  isZero(): boolean {
    return this.trustDomain.isZero();
  }

  toString(): string {
    return this.isZero() ? '' : SCHEME_PREFIX + this.trustDomain.name + this.path;
  }

  toJSON(): string {
    return this.toString();
  }

  equals(o: SpiffeId): boolean {
    return this.trustDomain.equals(o.trustDomain) && this.path === o.path;
  }

  memberOf(td: TrustDomain): boolean {
    return !this.isZero() && this.trustDomain.equals(td);
  }

  /** Path segments without slashes ([] for an empty path). */
  segments(): string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }

  replacePath(path: string): SpiffeId {
    if (this.isZero()) throw new SpiffeIdError('ZERO_ID', 'cannot replace path on a zero ID value');
    return spiffeIdFromPath(this.trustDomain, path);
  }

  appendPath(path: string): SpiffeId {
    if (this.isZero()) throw new SpiffeIdError('ZERO_ID', 'cannot append path on a zero ID value');
    validatePath(path);
    return SpiffeId.fromValidated(this.trustDomain, this.path + path);
  }

  replaceSegments(...segments: string[]): SpiffeId {
    if (this.isZero()) throw new SpiffeIdError('ZERO_ID', 'cannot replace path segments on a zero ID value');
    return spiffeIdFromSegments(this.trustDomain, ...segments);
  }

  appendSegments(...segments: string[]): SpiffeId {
    if (this.isZero()) throw new SpiffeIdError('ZERO_ID', 'cannot append path segments on a zero ID value');
    return SpiffeId.fromValidated(this.trustDomain, this.path + joinPathSegments(...segments));
  }
}

function checkTotalLength(td: TrustDomain, path: string): void {
  if (SCHEME_PREFIX.length + td.name.length + path.length > MAX_SPIFFE_ID_LENGTH) fail('TOO_LONG');
}

/** Parse a full SPIFFE ID string (go-spiffe FromString). Throws SpiffeIdError. */
export function parseSpiffeId(text: string): SpiffeId {
  if (typeof text !== 'string' || text === '') fail('EMPTY');
  if (!text.startsWith(SCHEME_PREFIX)) fail('SCHEME', text);
  // Bound the work before scanning: nothing this long can be valid.
  if (text.length > MAX_SPIFFE_ID_LENGTH) fail('TOO_LONG', text);

  let i = SCHEME_PREFIX.length;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2f) break; // '/'
    if (!isTrustDomainChar(c)) fail('TD_CHAR', text);
  }
  const tdName = text.slice(SCHEME_PREFIX.length, i);
  if (tdName === '') fail('TD_MISSING', text);
  if (tdName.length > MAX_TRUST_DOMAIN_LENGTH) fail('TD_TOO_LONG', text);
  const path = text.slice(i);
  validatePath(path, text);
  return SpiffeId.fromValidated(TrustDomain.fromValidatedName(tdName), path);
}

/**
 * Parse a trust domain (go-spiffe TrustDomainFromString): a bare name ('example.org') or,
 * when the input contains ':/', a full SPIFFE ID whose path is validated then ignored.
 */
export function parseTrustDomain(text: string): TrustDomain {
  if (typeof text !== 'string' || text === '') fail('TD_MISSING');
  if (text.includes(':/')) return parseSpiffeId(text).trustDomain;
  if (text.length > MAX_TRUST_DOMAIN_LENGTH) fail('TD_TOO_LONG', text);
  for (let i = 0; i < text.length; i++) {
    if (!isTrustDomainChar(text.charCodeAt(i))) fail('TD_CHAR', text);
  }
  return TrustDomain.fromValidatedName(text);
}

/** ID from a trust domain and path segments (no slashes in segments). */
export function spiffeIdFromSegments(td: TrustDomain, ...segments: string[]): SpiffeId {
  if (td.isZero()) throw new SpiffeIdError('ZERO_ID', 'trust domain is the zero value');
  return SpiffeId.fromValidated(td, joinPathSegments(...segments));
}

/** ID from a trust domain and a path ('' or '/a/b'). */
export function spiffeIdFromPath(td: TrustDomain, path: string): SpiffeId {
  if (td.isZero()) throw new SpiffeIdError('ZERO_ID', 'trust domain is the zero value');
  validatePath(path);
  return SpiffeId.fromValidated(td, path);
}

/** Validate a path: '' or one or more '/segment'. */
export function validatePath(path: string, input: string = path): void {
  if (path === '') return;
  if (path.charCodeAt(0) !== 0x2f) fail('NO_LEADING_SLASH', input);
  let segStart = 0;
  for (let i = 1; i <= path.length; i++) {
    const atEnd = i === path.length;
    const c = atEnd ? 0x2f : path.charCodeAt(i);
    if (c === 0x2f) {
      const seg = path.slice(segStart + 1, i);
      if (seg === '') fail(atEnd ? 'TRAILING_SLASH' : 'EMPTY_SEGMENT', input);
      if (seg === '.' || seg === '..') fail('DOT_SEGMENT', input);
      segStart = i;
    } else if (!isPathSegmentChar(c)) {
      fail('PATH_CHAR', input);
    }
  }
}

/** Validate one path segment (no slashes). */
export function validatePathSegment(seg: string): void {
  if (seg === '') fail('EMPTY_SEGMENT');
  if (seg === '.' || seg === '..') fail('DOT_SEGMENT', seg);
  for (let i = 0; i < seg.length; i++) {
    if (!isPathSegmentChar(seg.charCodeAt(i))) fail('PATH_CHAR', seg);
  }
}

/** '/a/b' from ('a', 'b'); '' from no segments. Each segment is validated. */
export function joinPathSegments(...segs: string[]): string {
  let out = '';
  for (const seg of segs) {
    validatePathSegment(seg);
    out += `/${seg}`;
    if (out.length > MAX_SPIFFE_ID_LENGTH) fail('TOO_LONG');
  }
  return out;
}
