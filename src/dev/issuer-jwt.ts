/**
 * DEVELOPMENT ONLY: the dev issuer's JWT-SVID cache, as SPIRE's agent keeps one: keyed by SPIFFE
 * ID and the sorted audience list, a token is served again until it passes its (jittered)
 * half-life or its signing key is tainted. Bounded: the least recently used token goes first.
 */
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { rotationDue } from './issuer-util.js';

/** SPIRE agent's default `x509_svid_cache_max_size` also bounds its JWT cache. */
export const JWT_CACHE_MAX_ENTRIES = 1000;

interface CachedJwt {
  token: string;
  kid: string;
  iatMs: number;
  expMs: number;
}

export function jwtCacheKey(spiffeId: string, audience: readonly string[]): string {
  return JSON.stringify([spiffeId, ...[...audience].sort()]);
}

export class JwtSvidCache {
  /** Map order is recency order: the first key is the least recently used. */
  private readonly tokens = new Map<string, CachedJwt>();

  constructor(private readonly maxEntries = JWT_CACHE_MAX_ENTRIES) {}

  /** The cached token for `key` unless it is due for renewal. */
  get(key: string, nowMs: number, jitter: boolean): string | undefined {
    const hit = this.tokens.get(key);
    if (!hit || rotationDue(nowMs, hit.iatMs, hit.expMs, jitter)) return undefined;
    this.tokens.delete(key);
    this.tokens.set(key, hit);
    return hit.token;
  }

  set(key: string, token: string): void {
    const claims = decodeJwt(token);
    const kid = String(decodeProtectedHeader(token).kid ?? '');
    this.tokens.delete(key);
    if (this.tokens.size >= this.maxEntries) {
      const oldest = this.tokens.keys().next().value;
      if (oldest !== undefined) this.tokens.delete(oldest);
    }
    this.tokens.set(key, { token, kid, iatMs: Number(claims.iat ?? 0) * 1000, expMs: Number(claims.exp ?? 0) * 1000 });
  }

  /** Forgets every token signed with one of `kids` (a tainted authority's keys). */
  dropKeys(kids: ReadonlySet<string>): void {
    for (const [key, hit] of this.tokens) if (kids.has(hit.kid)) this.tokens.delete(key);
  }

  clear(): void {
    this.tokens.clear();
  }
}
