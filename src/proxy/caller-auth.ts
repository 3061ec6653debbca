/**
 * Optional local caller authentication for the outbound listener: a caller proves it can read
 * the token file by sending the token as the password of HTTP Basic proxy credentials
 * (`HTTP_PROXY=http://agent:TOKEN@127.0.0.1:15001`; curl, Python requests, undici and Go all
 * turn that into `Proxy-Authorization: Basic base64(agent:TOKEN)`). Any user name is accepted.
 * The file is re-read when it changes; an unusable file refuses every request (fail closed).
 */
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../lib/log.js';
import { REASONS, refuse, type Refusal } from '../reasons.js';

/**
 * URL-safe characters only, so the token goes into a proxy URL unescaped; long enough that
 * guessing is hopeless (`openssl rand -hex 32` makes a good one).
 */
const TOKEN_FORMAT = /^[A-Za-z0-9._~-]{16,1024}$/;

/** 407 with the challenge a proxy client answers with its credentials. */
export const CALLER_UNAUTHENTICATED: Refusal = refuse('caller_unauthenticated', REASONS.caller_unauthenticated.message, {
  'proxy-authenticate': 'Basic realm="attest-sidecar"',
});

export class CallerTokenCheck {
  private token: Buffer | undefined;
  /** A buffer of the token's length, reused for the constant-time comparison. */
  private scratch: Buffer = Buffer.alloc(0);
  /** While the token file is unusable (no token): the 503 every request gets, built once per load. */
  private unavailable: Refusal = refuse('caller_token_unavailable', 'Caller token unavailable: not loaded');
  private watch: FileWatch | undefined;

  constructor(
    private readonly file: string,
    private readonly logger: Logger,
  ) {
    // Watch first, then read: a change made before the watch is armed would never be seen.
    this.watch = watchFiles([file], () => void this.reload(), {
      onError: (err) => this.logger.error({ err: err.message }, 'caller token file watch failed; keeping the current token'),
    });
    this.reload();
  }

  /**
   * Judges a request's Proxy-Authorization value: undefined when it carries the token, else the
   * refusal. Time does not depend on how much of the token matched.
   */
  check(header: string | string[] | undefined): Refusal | undefined {
    const token = this.token;
    if (!token) return this.unavailable;
    if (typeof header !== 'string' || header.length < 7 || header.slice(0, 6).toLowerCase() !== 'basic ') return CALLER_UNAUTHENTICATED;
    const decoded = Buffer.from(header.slice(6).trim(), 'base64');
    const colon = decoded.indexOf(0x3a);
    if (colon === -1) return CALLER_UNAUTHENTICATED;
    const password = decoded.subarray(colon + 1);
    // Compare a same-length copy, so the comparison itself takes the same time for every guess.
    const scratch = this.scratch;
    scratch.fill(0);
    password.copy(scratch, 0, 0, Math.min(password.length, scratch.length));
    const equal = timingSafeEqual(scratch, token);
    return equal && password.length === token.length ? undefined : CALLER_UNAUTHENTICATED;
  }

  /** Re-reads the token file (the watcher and SIGHUP); returns whether a token is loaded. */
  reload(): boolean {
    let value: string;
    try {
      value = readFileSync(this.file, 'utf8').trim();
      if (!TOKEN_FORMAT.test(value)) {
        throw new Error(`${this.file} must hold one token of 16 to 1024 characters from A-Z a-z 0-9 . _ ~ -`);
      }
    } catch (err) {
      const problem = (err as NodeJS.ErrnoException).code ? `cannot read ${this.file}: ${(err as NodeJS.ErrnoException).code}` : errorMessage(err);
      this.logger.error({ err: problem }, 'caller token file unusable; the outbound proxy refuses every request until fixed');
      this.unavailable = refuse('caller_token_unavailable', `Caller token unavailable: ${problem}`);
      this.token = undefined;
      return false;
    }
    const changed = this.token !== undefined;
    this.token = Buffer.from(value, 'latin1');
    this.scratch = Buffer.alloc(this.token.length);
    this.logger.info({ file: this.file }, changed ? 'caller token reloaded' : 'caller token loaded');
    return true;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }
}
