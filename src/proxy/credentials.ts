/**
 * Credential injection for outbound routes: the sidecar, not the agent, holds the upstream API
 * key. Secret files are read at start and re-read when they change (Kubernetes Secret volumes
 * swap a symlink); the agent's own copy of an injected header is dropped, and the secret is
 * scrubbed from response headers and bodies so an upstream that echoes requests cannot hand it
 * back to the agent.
 */
import { readFileSync } from 'node:fs';
import type { InjectedHeaderConfig } from '../config/types.js';
import { SidecarError, errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../config/file-watch.js';
import type { Logger } from '../log.js';

/** Longest secret accepted: header values beyond this are a misconfiguration. */
const MAX_SECRET_BYTES = 8 * 1024;
export const REDACTED = '[redacted]';

export class CredentialInjector {
  /** Lower-case names the agent may not send (ours replace them). */
  readonly names: ReadonlySet<string>;
  /** [name, value, ...] appended to each forwarded request; undefined while a file is unusable. */
  private pairs: string[] | undefined;
  private secrets: Buffer[] = [];
  private problem = '';
  private watch: FileWatch | undefined;

  constructor(
    private readonly headers: readonly InjectedHeaderConfig[],
    private readonly logger: Logger,
    private readonly route: string,
  ) {
    this.names = new Set(headers.map((h) => h.name));
    this.load();
    this.watch = watchFiles(headers.map((h) => h.file), () => this.load(), {
      onError: (err) => this.logger.error({ route, err: err.message }, 'credential file watch failed; keeping the current credentials'),
    });
  }

  /** The header pairs to append; throws `credential_unavailable` when a secret file is unusable (fail closed). */
  headerPairs(): string[] {
    if (!this.pairs) throw new SidecarError('credential_unavailable', `Upstream credential for route '${this.route}' is unavailable: ${this.problem}`);
    return this.pairs;
  }

  /** Secret values, for scrubbing responses. */
  secretValues(): readonly Buffer[] {
    return this.secrets;
  }

  private load(): void {
    const pairs: string[] = [];
    const secrets: Buffer[] = [];
    try {
      for (const h of this.headers) {
        const secret = readSecret(h.file);
        pairs.push(h.name, h.prefix + secret);
        secrets.push(Buffer.from(secret, 'utf8'));
      }
    } catch (err) {
      // A secret that vanished or became invalid stops the route rather than sending no key.
      this.problem = errorMessage(err);
      if (this.pairs) this.logger.error({ route: this.route, err: this.problem }, 'credential file unusable; route refuses requests until fixed');
      else this.logger.error({ route: this.route, err: this.problem }, 'credential file unusable at start; route refuses requests');
      this.pairs = undefined;
      return;
    }
    const changed = this.pairs !== undefined;
    this.pairs = pairs;
    this.secrets = secrets;
    this.logger.info({ route: this.route, headers: [...this.names] }, changed ? 'credentials reloaded' : 'credentials loaded');
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }
}

function readSecret(file: string): string {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
  if (raw.length > MAX_SECRET_BYTES) throw new Error(`${file} is over ${MAX_SECRET_BYTES} bytes`);
  const value = raw.toString('utf8').trim();
  if (!value) throw new Error(`${file} is empty`);
  if (/[\r\n\0]/.test(value)) throw new Error(`${file} holds more than one line; a header value cannot contain line breaks`);
  // Header values are ISO-8859-1 on the wire; anything else would be mangled, not sent.
  if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) throw new Error(`${file} holds characters not allowed in an HTTP header value`);
  return value;
}

/** Copies response headers with every secret occurrence replaced; undefined when none occurs. */
export function scrubHeaders(
  headers: Record<string, string | string[]>,
  secrets: readonly Buffer[],
): Record<string, string | string[]> {
  const texts = secrets.map((s) => s.toString('latin1'));
  const scrub = (v: string) => texts.reduce((acc, s) => (acc.includes(s) ? acc.split(s).join(REDACTED) : acc), v);
  const out: Record<string, string | string[]> = Object.create(null); // header names are the peer's
  for (const name in headers) {
    const v = headers[name]!;
    out[name] = Array.isArray(v) ? v.map(scrub) : scrub(v);
  }
  return out;
}

/**
 * Scans a streamed body, replacing every occurrence of any secret with `[redacted]`, also
 * across chunk boundaries: a chunk's tail that could begin a secret is held back until the next
 * chunk shows whether it does (nothing else is delayed, so streamed events flow at once).
 */
export class SecretScanner {
  private carry: Buffer = Buffer.alloc(0);
  private readonly hold: number;
  private readonly redacted = Buffer.from(REDACTED);

  constructor(private readonly secrets: readonly Buffer[]) {
    this.hold = Math.max(0, ...secrets.map((s) => s.length - 1));
  }

  /** The bytes that can go downstream now. */
  push(chunk: Buffer): Buffer {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const { out, rest } = this.scan(data, false);
    this.carry = rest;
    return out;
  }

  /** The held-back tail at the end of the body. */
  end(): Buffer {
    const { out } = this.scan(this.carry, true);
    this.carry = Buffer.alloc(0);
    return out;
  }

  /** Length of the longest tail of data[from..] that is a proper prefix of a secret (held back). */
  private partialSecretTail(data: Buffer, from: number): number {
    for (let k = Math.min(this.hold, data.length - from); k > 0; k--) {
      const start = data.length - k;
      for (const s of this.secrets) {
        if (s.length > k && data.compare(s, 0, k, start, data.length) === 0) return k;
      }
    }
    return 0;
  }

  /** Replaces secrets in `data`; keeps back a tail that could be the start of one (unless final). */
  private scan(data: Buffer, final: boolean): { out: Buffer; rest: Buffer } {
    const parts: Buffer[] = [];
    let from = 0;
    for (;;) {
      let at = -1;
      let len = 0;
      for (const s of this.secrets) {
        const i = data.indexOf(s, from);
        if (i !== -1 && (at === -1 || i < at)) {
          at = i;
          len = s.length;
        }
      }
      if (at === -1) break;
      parts.push(data.subarray(from, at), this.redacted);
      from = at + len;
    }
    const keep = final ? 0 : this.partialSecretTail(data, from);
    parts.push(data.subarray(from, data.length - keep));
    return { out: parts.length === 1 ? parts[0]! : Buffer.concat(parts), rest: Buffer.from(data.subarray(data.length - keep)) };
  }
}
