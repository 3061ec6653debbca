/**
 * Admin API authentication. A mutation is allowed for exactly two kinds of caller:
 *  - an mTLS peer (verified SVID) whose SPIFFE ID the policy lists under `admins`;
 *  - a loopback caller presenting the bearer token from a 0600 file.
 * Nothing else: there is no unauthenticated mutation. The credential is checked first, so a
 * correct one is always accepted: a flood of failures (a local process, a web page's form posts)
 * must never lock the operator out of the kill switch. Failed attempts are logged (never with
 * the presented token) and throttled per remote address and per peer ID: past the limit a
 * failure is answered 429 with Retry-After and logged once per episode. Guessing is made
 * infeasible by the token's entropy (256 bits when the sidecar creates it), not by the limiter.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { SidecarError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../lib/fs-atomic.js';
import type { Logger } from '../lib/log.js';
import { authorizeOneOf, verifiedIdentity, type Authorizer } from '../spiffe/authorize.js';
import { REASONS, type ReasonCode, type Refusal } from '../reasons.js';
import { adminRefusal } from './json.js';

export const MIN_ADMIN_TOKEN_LENGTH = 32;
const MAX_ADMIN_TOKEN_FILE_BYTES = 4096;
/** Printable ASCII without spaces: what fits in `Authorization: Bearer <token>`. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * Reads the admin token. Refuses (SidecarError 'admin_token_unreadable') a missing file, a
 * symlink, anything but a regular file, a file group or others may access (mode & 0o077),
 * and a token shorter than 32 characters after trimming.
 */
export async function loadAdminToken(file: string): Promise<string> {
  const unreadable = (why: string, cause?: unknown) =>
    new SidecarError('admin_token_unreadable', `admin token file ${file} ${why}`, cause ? { cause } : undefined);
  let fh;
  try {
    // O_NONBLOCK: opening a FIFO planted at this path must not hang startup.
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw unreadable('does not exist', err);
    if (code === 'ELOOP') throw unreadable('is a symlink; point the config at the file itself', err);
    throw unreadable(`cannot be opened: ${errorMessage(err)}`, err);
  }
  try {
    const stats = await fh.stat();
    if (!stats.isFile()) throw unreadable('is not a regular file');
    if ((stats.mode & 0o077) !== 0) {
      throw unreadable(`has mode ${(stats.mode & 0o777).toString(8).padStart(4, '0')}; it must be private to its owner (chmod 600)`);
    }
    if (stats.size > MAX_ADMIN_TOKEN_FILE_BYTES) throw unreadable(`is larger than ${MAX_ADMIN_TOKEN_FILE_BYTES} bytes`);
    const token = (await fh.readFile('utf8')).trim();
    if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw unreadable(`holds a token of ${token.length} characters; at least ${MIN_ADMIN_TOKEN_LENGTH} are required`);
    }
    if (!TOKEN_CHARS.test(token)) throw unreadable('holds a token with spaces or non-printable characters');
    return token;
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw unreadable(`cannot be read: ${errorMessage(err)}`, err);
  } finally {
    await fh.close();
  }
}

/**
 * Returns the token in `file`, creating the file (32 random bytes, base64url, mode 0600,
 * atomic write) when it is missing or not a valid token file. A valid file is reused.
 */
export async function createAdminTokenFile(file: string): Promise<string> {
  try {
    return await loadAdminToken(file);
  } catch (err) {
    if (!(err instanceof SidecarError)) throw err;
  }
  // A rename replaces an insecure file (or a symlink itself, never its target) with a private one.
  await writeFileAtomic(file, `${randomBytes(32).toString('base64url')}\n`, 0o600);
  return loadAdminToken(file);
}

export type AdminAuthFailureReason = Extract<ReasonCode, 'admin_auth_missing' | 'admin_auth_invalid' | 'admin_not_listed' | 'admin_rate_limited' | 'admin_not_loopback'>;

/** A refused authentication: the refusal the caller gets (401 with a Bearer challenge, 403, or 429 with Retry-After). */
export type AdminAuthFailure = Refusal & {
  readonly ok: false;
  readonly reason: AdminAuthFailureReason;
  /** With 429: seconds until the caller may try again (the Retry-After header). */
  readonly retryAfterSeconds?: number;
};

export type AdminAuthResult = { ok: true; principal: string } | AdminAuthFailure;

const BEARER_CHALLENGE = { 'www-authenticate': 'Bearer realm="attest-sidecar admin"' };

export interface AdminAuthInput {
  /** The `Authorization` header, as received. */
  authorization?: string;
  remoteAddress?: string;
  /** Set only by an mTLS admin listener, after SVID verification. */
  peerSpiffeId?: string;
}

export interface AdminAuthenticatorOptions {
  /** The bearer token (see loadAdminToken); without it only mTLS admins can authenticate. */
  token?: string;
  /** Current admin SPIFFE IDs (from the live policy). */
  admins: () => ReadonlySet<string>;
  logger: Logger;
  now?: () => number;
  maxFailures?: number;
  windowMs?: number;
  /** Cap on remembered addresses / peer IDs (oldest forgotten first). */
  maxTrackedKeys?: number;
}

/** The principal name of a bearer-token caller. */
export const TOKEN_PRINCIPAL = 'token';

export class AdminAuthenticator {
  private readonly listedAdmin: Authorizer;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly limiter: FailureLimiter;
  private tokenDigest: Buffer | undefined;

  constructor(opts: AdminAuthenticatorOptions) {
    this.listedAdmin = authorizeOneOf(opts.admins);
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.limiter = new FailureLimiter(opts.maxFailures ?? 5, opts.windowMs ?? 60_000, opts.maxTrackedKeys ?? 10_000);
    this.setToken(opts.token);
  }

  /** Replaces the bearer token (rotation); undefined disables token authentication. */
  setToken(token: string | undefined): void {
    if (token !== undefined && token.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw new SidecarError('admin_token_unreadable', `admin token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`);
    }
    this.tokenDigest = token === undefined ? undefined : sha256(token);
  }

  /** Addresses and peer IDs currently remembered by the rate limiter. */
  get trackedKeys(): number {
    return this.limiter.size;
  }

  authenticate(input: AdminAuthInput): AdminAuthResult {
    const remote = canonicalAddress(input.remoteAddress);
    const result = this.decide(input, remote);
    if (result.ok) return result;

    const now = this.now();
    const keys = [`addr:${remote ?? 'unknown'}`];
    if (input.peerSpiffeId !== undefined) keys.push(`peer:${input.peerSpiffeId}`);
    const context = { remote: remote ?? null, peer: input.peerSpiffeId ?? null };
    const retryMs = this.limiter.blockedFor(keys, now);
    if (retryMs !== undefined) {
      if (this.limiter.firstBlockedNotice(keys)) {
        this.logger.warn({ ...context, reason: 'admin_rate_limited', status: 429 }, 'admin authentication failures throttled');
      }
      const retryAfterSeconds = Math.max(1, Math.ceil(retryMs / 1000));
      const error = `too many failed admin authentication attempts; retry in ${retryAfterSeconds} s (a valid credential is always accepted)`;
      return { ...adminRefusal('admin_rate_limited', error, { headers: { 'retry-after': String(retryAfterSeconds) } }), ok: false, reason: 'admin_rate_limited', retryAfterSeconds };
    }
    this.limiter.recordFailure(keys, now);
    this.logger.warn({ ...context, reason: result.reason, status: result.status }, `admin authentication failed: ${result.error}`);
    return result;
  }

  private decide(input: AdminAuthInput, remote: string | undefined): AdminAuthResult {
    // A request on the mTLS admin listener is decided by its verified identity alone.
    if (input.peerSpiffeId !== undefined) {
      if (this.listedAdmin(verifiedIdentity(input.peerSpiffeId)) === undefined) return { ok: true, principal: input.peerSpiffeId };
      return fail('admin_not_listed', `${input.peerSpiffeId || 'the peer'} is not listed under admins in the policy`);
    }
    const header = input.authorization;
    if (header === undefined || header.trim() === '') {
      return fail('admin_auth_missing', 'admin requests need a bearer token (loopback) or an admin mTLS identity');
    }
    // Checked before the token so a remote caller learns nothing about it.
    if (!isLoopbackAddress(remote)) {
      return fail('admin_not_loopback', 'bearer tokens are accepted on loopback only; remote admins must use mTLS');
    }
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m) return fail('admin_auth_invalid', "the Authorization header must be 'Bearer <token>'");
    if (!this.tokenDigest) return fail('admin_auth_invalid', 'bearer token authentication is not enabled');
    // Digests first: equal lengths for timingSafeEqual, and the token's length does not leak.
    if (!timingSafeEqual(sha256(m[1]!), this.tokenDigest)) return fail('admin_auth_invalid', 'wrong admin token');
    return { ok: true, principal: TOKEN_PRINCIPAL };
  }
}

function fail(reason: Exclude<AdminAuthFailureReason, 'admin_rate_limited'>, error: string): AdminAuthFailure {
  const refusal = adminRefusal(reason, error, REASONS[reason].status === 401 ? { headers: BEARER_CHALLENGE } : {});
  return { ...refusal, ok: false, reason };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Failure timestamps per key (sliding window). A key is throttled while it has `max` failures
 * younger than `windowMs`; throttled attempts are not counted, so throttling lifts when the
 * oldest of them ages out. It only ever applies to attempts that failed. Memory is bounded:
 * past `cap` keys the least recently failed go.
 */
class FailureLimiter {
  private readonly records = new Map<string, { failures: number[]; noticed: boolean }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly cap: number,
  ) {}

  get size(): number {
    return this.records.size;
  }

  /** Milliseconds until every key in `keys` may try again, or undefined when none is blocked. */
  blockedFor(keys: readonly string[], now: number): number | undefined {
    let wait: number | undefined;
    for (const key of keys) {
      const rec = this.records.get(key);
      if (!rec) continue;
      this.prune(rec.failures, now);
      if (rec.failures.length === 0) {
        this.records.delete(key);
        continue;
      }
      if (rec.failures.length >= this.max) {
        const until = rec.failures[rec.failures.length - this.max]! + this.windowMs - now;
        wait = Math.max(wait ?? 0, until);
      }
    }
    return wait;
  }

  /** True once per blocking episode, so a flood of 429s logs one line, not thousands. */
  firstBlockedNotice(keys: readonly string[]): boolean {
    let first = false;
    for (const key of keys) {
      const rec = this.records.get(key);
      if (rec && rec.failures.length >= this.max && !rec.noticed) {
        rec.noticed = true;
        first = true;
      }
    }
    return first;
  }

  recordFailure(keys: readonly string[], now: number): void {
    for (const key of keys) {
      const rec = this.records.get(key) ?? { failures: [], noticed: false };
      this.records.delete(key); // re-inserted last: Map order doubles as recency
      this.prune(rec.failures, now);
      rec.failures.push(now);
      if (rec.failures.length > this.max) rec.failures.splice(0, rec.failures.length - this.max);
      rec.noticed = false;
      this.records.set(key, rec);
    }
    while (this.records.size > this.cap) {
      const oldest = this.records.keys().next().value as string;
      this.records.delete(oldest);
    }
  }

  private prune(failures: number[], now: number): void {
    let drop = 0;
    while (drop < failures.length && failures[drop]! <= now - this.windowMs) drop++;
    if (drop) failures.splice(0, drop);
  }
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x addresses. */
export function isLoopbackAddress(address: string | undefined): boolean {
  const a = canonicalAddress(address);
  if (a === undefined) return false;
  return (net.isIPv4(a) && a.startsWith('127.')) || a === '::1';
}

/** One spelling per address: IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed and lower-case. */
export function canonicalAddress(address: string | undefined): string | undefined {
  if (!address) return undefined;
  if (net.isIPv4(address)) return address;
  if (!net.isIPv6(address)) return address;
  let host: string;
  try {
    host = new URL(`http://[${address}]/`).hostname.slice(1, -1); // WHATWG URL canonicalises IPv6
  } catch {
    return address.toLowerCase(); // e.g. a zone index (fe80::1%eth0): never loopback
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return host;
}
