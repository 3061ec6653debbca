/**
 * SEV-SNP collateral from AMD's Key Distribution Service (KDS), for reports whose evidence
 * carries no VCEK.
 *
 * Two paths, never mixed:
 *  - request path: `vcekFor(report)` is synchronous and reads memory only;
 *  - background:   `prefetch(report)` reads the on-disk cache, asks KDS when the entry is
 *    missing or due for refresh (never in offline mode), validates the answer against the
 *    report (and the AMD anchors when given) and only then stores it, on disk and in memory.
 * A KDS failure never drops a cached entry: the stale one keeps being served and the error is
 * reported. KDS rate-limits (429 / 503 with Retry-After): until that time passes no request is
 * sent at all.
 */
import { validityMs } from '../../spiffe/x509-strict.js';
import { SidecarError, errorMessage } from '../../errors.js';
import { verifyEndorsementChain, type SnpTrustAnchors } from './anchors.js';
import { parseSnpEndorsementCert, type SnpEndorsementCert } from './certs.js';
import { ensureCacheDir, listCacheFiles, readCacheFile, writeCacheFile, MAX_CACHE_FILE_BYTES } from './kds-cache.js';
import { kdsVcekPath, vcekCacheFileName, vcekKeyForCert, vcekKeyForReport, type VcekKey } from './kds-key.js';
import type { SnpProduct } from './tcb.js';
import type { Logger } from '../../lib/log.js';

export const KDS_DEFAULT_BASE_URL = 'https://kdsintf.amd.com';
const DEFAULT_TIMEOUT_MS = 10_000;
/** A VCEK for one (chip, TCB) does not change; refreshing weekly only catches re-issues. */
const DEFAULT_REFRESH_AFTER_MS = 7 * 24 * 3600_000;
/** Back-off when KDS says 429 without a usable Retry-After, and the most we ever wait. */
const DEFAULT_RETRY_AFTER_MS = 60_000;
const MAX_RETRY_AFTER_MS = 24 * 3600_000;
/**
 * Lookups (cache file, then KDS) running at once. The key comes from report bytes a peer sends
 * before anything is verified, so without a bound each made-up chip ID would open one more
 * request to AMD (and one more descriptor) for up to the KDS timeout.
 */
export const MAX_PREFETCHES_IN_FLIGHT = 8;

export interface KdsOptions {
  cacheDir: string;
  /** Default https://kdsintf.amd.com. */
  baseUrl?: string;
  /** Files only: never a network call. */
  offline?: boolean;
  /** Default undici's fetch. */
  fetch?: typeof fetch;
  /** Per KDS request, body included; default 10 s. */
  timeoutMs?: number;
  logger?: Logger;
  /** Clock in ms since the epoch; default Date.now. */
  now?: () => number;
  /** Product of reports without CPUID fields (report version 2); must agree with CPUID when both exist. */
  product?: SnpProduct;
  /** When given, a VCEK must also chain to these anchors before it is cached or loaded. */
  anchors?: SnpTrustAnchors;
  /** Age after which prefetch asks KDS again for a cached VCEK; default 7 days. */
  refreshAfterMs?: number;
}

export type KdsSource = 'cache' | 'kds' | 'stale' | 'none';

export interface KdsPrefetchResult {
  /** True when a VCEK valid now is in memory for this report (vcekFor will return it). */
  ok: boolean;
  source: KdsSource;
  error?: string;
  /** Reason code of `error` (kds_unavailable, kds_timeout, kds_rate_limited, kds_bad_answer, ...). */
  reason?: string;
  /** Set while KDS rate limiting is in force: when the next request may be sent. */
  retryAfterMs?: number;
}

interface Entry {
  der: Buffer;
  fetchedAt: number;
  notAfter: number;
}

export class KdsCollateral {
  private readonly cacheDir: string;
  private readonly baseUrl: string;
  private readonly offline: boolean;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly product: SnpProduct | undefined;
  private readonly anchors: SnpTrustAnchors | undefined;
  private readonly refreshAfterMs: number;

  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<KdsPrefetchResult>>();
  /** KDS rate limiting is per client, so one back-off for every key. */
  private backoffUntil = 0;

  constructor(opts: KdsOptions) {
    if (!opts || typeof opts.cacheDir !== 'string' || opts.cacheDir === '') {
      throw new SidecarError('config_invalid', 'KDS collateral: cacheDir is required');
    }
    this.cacheDir = opts.cacheDir;
    this.baseUrl = (opts.baseUrl ?? KDS_DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.offline = opts.offline ?? false;
    // undici's fetch is loaded on first use: its index costs every sidecar memory (see undici/pool.ts).
    this.fetchFn = opts.fetch ?? (async (input, init) => (await import('undici')).fetch(input as string, init as object) as unknown as Response);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.product = opts.product;
    this.anchors = opts.anchors;
    this.refreshAfterMs = opts.refreshAfterMs ?? DEFAULT_REFRESH_AFTER_MS;
  }

  /** Sync, memory only: the VCEK DER for this report, if cached. Never throws. */
  vcekFor(report: Uint8Array): Buffer | undefined {
    let key: VcekKey;
    try {
      key = vcekKeyForReport(report, this.product);
    } catch {
      return undefined;
    }
    const entry = this.entries.get(key.id);
    return entry ? Buffer.from(entry.der) : undefined; // a copy: callers cannot alter the cache
  }

  /**
   * Background: make the VCEK for this report available (disk, then KDS unless offline).
   * Concurrent calls for the same key share one run. Resolves when done, never rejects.
   */
  prefetch(report: Uint8Array): Promise<KdsPrefetchResult> {
    let key: VcekKey;
    try {
      key = vcekKeyForReport(report, this.product);
    } catch (err) {
      return Promise.resolve({ ok: false, source: 'none', error: errorMessage(err), reason: reasonOf(err) });
    }
    const running = this.inflight.get(key.id);
    if (running) return running;
    if (this.inflight.size >= MAX_PREFETCHES_IN_FLIGHT) {
      // Not logged: a peer can repeat this at will; the attempt fails closed with its reason.
      const entry = this.entries.get(key.id);
      const error = `${MAX_PREFETCHES_IN_FLIGHT} VCEK lookups already in progress; try again later`;
      return Promise.resolve(entry ? { ok: this.validNow(entry), source: 'stale', error, reason: 'kds_busy' } : { ok: false, source: 'none', error, reason: 'kds_busy' });
    }
    const run = this.refresh(key)
      .catch((err: unknown) => this.failed(key, err))
      // Last resort (e.g. a throwing logger): the promise must still resolve.
      .catch((err: unknown): KdsPrefetchResult => ({ ok: false, source: 'none', error: errorMessage(err), reason: 'kds_unavailable' }))
      .finally(() => this.inflight.delete(key.id));
    this.inflight.set(key.id, run);
    return run;
  }

  /**
   * Loads every cached entry from cacheDir into memory. A file that does not validate is
   * skipped (and logged); an unreadable directory rejects with kds_cache_unreadable.
   */
  async load(): Promise<void> {
    for (const name of await listCacheFiles(this.cacheDir)) {
      await this.loadFile(name);
    }
  }

  private async refresh(key: VcekKey): Promise<KdsPrefetchResult> {
    const entry = this.entries.get(key.id) ?? (await this.loadFile(vcekCacheFileName(key), key));
    if (entry && (this.offline || !this.isStale(entry))) return { ok: this.validNow(entry), source: 'cache' };
    if (this.offline) {
      return { ok: false, source: 'none', error: `offline: no cached VCEK for ${key.id}`, reason: 'collateral_missing' };
    }
    const now = this.now();
    if (now < this.backoffUntil) {
      const wait = this.backoffUntil - now;
      const err = new SidecarError('kds_rate_limited', `KDS rate limit in force: next request in ${Math.ceil(wait / 1000)}s`);
      return this.failed(key, err, wait);
    }

    const der = await this.fetchVcek(key);
    const cert = this.validate(der, key, true);
    const fresh: Entry = { der: Buffer.from(cert.der), fetchedAt: this.now(), notAfter: notAfterOf(cert) };
    this.entries.set(key.id, fresh);
    this.logger?.info({ key: key.id }, 'VCEK fetched from AMD KDS');
    try {
      await writeCacheFile(this.cacheDir, vcekCacheFileName(key), fresh.der);
    } catch (err) {
      const message = `VCEK fetched but not written to the cache: ${errorMessage(err)}`;
      this.logger?.warn({ key: key.id, err: errorMessage(err) }, message);
      return { ok: true, source: 'kds', error: message, reason: 'kds_cache_write_failed' };
    }
    return { ok: true, source: 'kds' };
  }

  /** Stale entry kept and served, or nothing: either way the error is reported and logged. */
  private failed(key: VcekKey, err: unknown, retryAfterMs?: number): KdsPrefetchResult {
    const entry = this.entries.get(key.id);
    const result: KdsPrefetchResult = entry
      ? { ok: this.validNow(entry), source: 'stale', error: errorMessage(err), reason: reasonOf(err) }
      : { ok: false, source: 'none', error: errorMessage(err), reason: reasonOf(err) };
    const now = this.now();
    if (retryAfterMs === undefined && this.backoffUntil > now) retryAfterMs = this.backoffUntil - now;
    if (retryAfterMs !== undefined) result.retryAfterMs = retryAfterMs;
    this.logger?.warn({ key: key.id, source: result.source, reason: result.reason, err: result.error }, 'KDS VCEK prefetch failed');
    return result;
  }

  private async fetchVcek(key: VcekKey): Promise<Buffer> {
    const url = this.baseUrl + kdsVcekPath(key);
    let res: Response;
    try {
      res = await this.fetchFn(url, {
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: 'application/pkix-cert, application/octet-stream, */*' },
      });
    } catch (err) {
      throw requestError(err, this.timeoutMs);
    }
    if (res.status === 429 || res.status === 503) {
      const header = retryAfterMs(res.headers.get('retry-after'), this.now());
      await res.body?.cancel().catch(() => undefined);
      if (res.status === 429 || header !== undefined) {
        const wait = Math.min(header ?? DEFAULT_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS);
        this.backoffUntil = Math.max(this.backoffUntil, this.now() + wait);
        throw new SidecarError('kds_rate_limited', `KDS answered ${res.status}; retry after ${Math.ceil(wait / 1000)}s`);
      }
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new SidecarError('kds_unavailable', `KDS answered ${res.status} for ${kdsVcekPath(key)}`);
    }
    try {
      return await readCapped(res, MAX_CACHE_FILE_BYTES);
    } catch (err) {
      throw err instanceof SidecarError ? err : requestError(err, this.timeoutMs);
    }
  }

  /**
   * The bytes must be a VCEK for exactly `key` (product, hwID, TCB SPLs) and, with anchors,
   * chain to them. `fetched` also refuses a certificate already expired.
   */
  private validate(bytes: Uint8Array, key: VcekKey, fetched: boolean): SnpEndorsementCert {
    let cert: SnpEndorsementCert;
    let got: VcekKey;
    try {
      cert = parseSnpEndorsementCert(bytes);
      got = vcekKeyForCert(cert);
    } catch (err) {
      throw new SidecarError('kds_bad_answer', `not a VCEK: ${errorMessage(err)}`, { cause: err });
    }
    if (got.id !== key.id) {
      throw new SidecarError('kds_bad_answer', `certificate is the VCEK for ${describeMismatch(got, key)}`);
    }
    const now = this.now();
    if (fetched && notAfterOf(cert) < now) {
      throw new SidecarError('kds_bad_answer', `VCEK expired at ${cert.x509.validTo}`);
    }
    if (this.anchors) {
      // Checked at a time inside the VCEK's validity: expiry is the verifier's call, not a reason to forget it.
      const at = new Date(Math.min(now, notAfterOf(cert)));
      try {
        verifyEndorsementChain(cert, this.anchors, key.product, at);
      } catch (err) {
        throw new SidecarError('kds_bad_answer', `VCEK does not chain to the AMD anchors: ${errorMessage(err)}`, { cause: err });
      }
    }
    return cert;
  }

  /** Reads and validates one cache file into memory; logs and returns undefined on any problem. */
  private async loadFile(name: string, expected?: VcekKey): Promise<Entry | undefined> {
    try {
      const file = await readCacheFile(this.cacheDir, name);
      if (!file) return undefined;
      let key = expected;
      if (!key) {
        key = vcekKeyForCert(parseSnpEndorsementCert(file.data));
        if (vcekCacheFileName(key) !== name) {
          throw new SidecarError('kds_cache_refused', `cache file ${name} holds the VCEK for ${key.id}`);
        }
      }
      const cert = this.validate(file.data, key, false);
      const entry: Entry = { der: Buffer.from(cert.der), fetchedAt: file.mtimeMs, notAfter: notAfterOf(cert) };
      this.entries.set(key.id, entry);
      return entry;
    } catch (err) {
      this.logger?.warn({ file: name, reason: reasonOf(err), err: errorMessage(err) }, 'KDS cache file ignored');
      return undefined;
    }
  }

  private isStale(entry: Entry): boolean {
    const now = this.now();
    return now - entry.fetchedAt >= this.refreshAfterMs || now > entry.notAfter;
  }

  private validNow(entry: Entry): boolean {
    return this.now() <= entry.notAfter;
  }

  /** Creates the private cache directory ahead of the first write (optional). */
  async init(): Promise<void> {
    await ensureCacheDir(this.cacheDir);
  }
}

function notAfterOf(cert: SnpEndorsementCert): number {
  return validityMs(cert.der).notAfterMs; // parseSnpEndorsementCert has checked it parses
}

function reasonOf(err: unknown): string {
  return err instanceof SidecarError ? err.reason : 'kds_unavailable';
}

function requestError(err: unknown, timeoutMs: number): SidecarError {
  // fetch reports the abort either directly or as the cause of a TypeError('fetch failed').
  const shape = err as { name?: string; cause?: { name?: string } } | undefined;
  const timedOut = (n: string | undefined) => n === 'TimeoutError' || n === 'AbortError';
  if (timedOut(shape?.name) || timedOut(shape?.cause?.name)) {
    return new SidecarError('kds_timeout', `KDS did not answer within ${timeoutMs}ms`, { cause: err });
  }
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const detail = cause ? `${errorMessage(err)} (${errorMessage(cause)})` : errorMessage(err);
  return new SidecarError('kds_unavailable', `KDS request failed: ${detail}`, { cause: err });
}

/** Retry-After as delay-seconds or an HTTP date, in ms from `now`; undefined if absent or unusable. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The body, refusing more than `max` bytes without buffering them. */
async function readCapped(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new SidecarError('kds_bad_answer', `KDS answer of ${declared} bytes is too large for a VCEK`);
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      throw new SidecarError('kds_bad_answer', `KDS answer exceeds ${max} bytes: not a VCEK`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

function describeMismatch(got: VcekKey, want: VcekKey): string {
  const [gp, gh, gt] = got.id.split(':');
  const [wp, wh, wt] = want.id.split(':');
  const diffs: string[] = [];
  if (gp !== wp) diffs.push(`product ${gp} (want ${wp})`);
  if (gh !== wh) diffs.push(`hwID ${gh!.slice(0, 16)}… (want ${wh!.slice(0, 16)}…)`);
  if (gt !== wt) diffs.push(`TCB ${gt} (want ${wt})`);
  return diffs.join(', ');
}
