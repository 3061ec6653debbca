/**
 * Verdict cache: an appraised peer is remembered per (peer SVID key, evidence, policy
 * version), so a warm session costs one Map lookup and no crypto.
 *
 * A verdict lives until the earliest of: the peer SVID's notAfter, the evidence's max age,
 * the collateral's expiry (all folded into `expiresAtMs`), or a policy / reference-value change
 * (the key carries the version, so a new version simply misses). Bounded: past maxEntries the
 * oldest verdicts go first. Connections keep their own last verdict in front of this cache,
 * so the per-request path does not even build the key.
 */
export interface Verdict {
  readonly claims: Readonly<Record<string, unknown>>;
  readonly evidenceType: string;
  readonly expiresAtMs: number;
  readonly verifiedAtMs: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  evictions: number;
}

export class VerdictCache {
  private readonly map = new Map<string, Verdict>();
  readonly stats: CacheStats = { hits: 0, misses: 0, evictions: 0 };

  constructor(private readonly maxEntries = 10_000) {}

  static key(peerSpkiSha256Hex: string, evidenceId: string, policyVersion: string): string {
    return `${peerSpkiSha256Hex}|${evidenceId}|${policyVersion}`;
  }

  get(key: string, nowMs: number): Verdict | undefined {
    const v = this.map.get(key);
    if (v === undefined) {
      this.stats.misses++;
      return undefined;
    }
    if (nowMs >= v.expiresAtMs) {
      this.map.delete(key);
      this.stats.misses++;
      this.stats.evictions++;
      return undefined;
    }
    this.stats.hits++;
    return v;
  }

  set(key: string, verdict: Verdict): void {
    this.map.delete(key);
    this.map.set(key, verdict);
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.stats.evictions++;
    }
  }

  /** Drops everything (trust anchors changed). */
  clear(): void {
    this.stats.evictions += this.map.size;
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }

  /** Verdicts for /status: peer key hash -> the newest verdict. */
  entries(): [string, Verdict][] {
    return [...this.map.entries()];
  }
}
