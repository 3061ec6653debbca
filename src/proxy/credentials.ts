/**
 * Credential injection for outbound routes: the sidecar, not the agent, holds the upstream API
 * key. Secret files are read at start and re-read when they change (Kubernetes Secret volumes
 * swap a symlink); the agent's own copy of an injected header is dropped, and the secret is
 * scrubbed from response headers and bodies so an upstream that echoes requests cannot hand it
 * back to the agent: raw, base64 (standard and URL-safe, at any alignment) and hex. The
 * upstream is asked for an unencoded body (`accept-encoding: identity`); a compressed one is
 * decoded before scanning (see response-filter.ts).
 */
import { readFileSync } from 'node:fs';
import type { InjectedHeaderConfig } from '../config/types.js';
import { SidecarError, errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import type { Logger } from '../lib/log.js';
import { refuse, type Refusal } from '../reasons.js';

/** The agent's Accept-Encoding is replaced: a compressed echo would hide the secret from the scanner. */
const IDENTITY_ENCODING = ['accept-encoding', 'identity'] as const;

/**
 * Shortest encoded form worth scrubbing: a shorter one would redact ordinary text. Only secrets
 * under 6 bytes (far below any API key) have encoded forms this short.
 */
const MIN_ENCODED_FORM = 8;

/** Bytes percent-encoding leaves as they are (RFC 3986 unreserved). */
const UNRESERVED_BYTE = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED_BYTE[c.charCodeAt(0)] = 1;

/** Longest secret accepted: header values beyond this are a misconfiguration. */
const MAX_SECRET_BYTES = 8 * 1024;
export const REDACTED = '[redacted]';

export class CredentialInjector {
  /** Lower-case names the agent may not send (ours replace them, and accept-encoding). */
  readonly names: ReadonlySet<string>;
  /** [name, value, ...] appended to each forwarded request; undefined while a file is unusable. */
  private pairs: string[] | undefined;
  private secrets: Buffer[] = [];
  /** While a secret file is unusable: the 503 every request on the route gets (built once per load). */
  private unavailable: Refusal;
  private watch: FileWatch | undefined;

  constructor(
    private readonly headers: readonly InjectedHeaderConfig[],
    private readonly logger: Logger,
    private readonly route: string,
  ) {
    this.names = new Set([...headers.map((h) => h.name), IDENTITY_ENCODING[0]]);
    this.unavailable = refuse('credential_unavailable', `Upstream credential for route '${route}' is unavailable: not loaded`);
    this.reload();
    this.watch = watchFiles(headers.map((h) => h.file), () => void this.reload(), {
      onError: (err) => this.logger.error({ route, err: err.message }, 'credential file watch failed; keeping the current credentials'),
    });
  }

  /** undefined while the credentials are usable; else the refusal of the route's requests (fail closed). */
  check(): Refusal | undefined {
    return this.pairs ? undefined : this.unavailable;
  }

  /** The header pairs to append; throws `credential_unavailable` (check's refusal) when a secret file is unusable. */
  headerPairs(): string[] {
    if (!this.pairs) {
      const refusal = this.unavailable;
      throw new SidecarError(refusal.reason, refusal.error);
    }
    return this.pairs;
  }

  /** Byte strings scrubbed from responses: each secret and its encoded forms (see scrubForms). */
  secretValues(): readonly Buffer[] {
    return this.secrets;
  }

  /** Re-reads the secret files (the watcher and SIGHUP); returns whether the route is usable. */
  reload(): boolean {
    const pairs: string[] = [];
    const secrets: Buffer[] = [];
    try {
      for (const h of this.headers) {
        const secret = readSecret(h.file);
        pairs.push(h.name, h.prefix + secret);
        secrets.push(...scrubForms(Buffer.from(secret, 'latin1')));
      }
      pairs.push(...IDENTITY_ENCODING);
    } catch (err) {
      // A secret that vanished or became invalid stops the route rather than sending no key.
      const problem = errorMessage(err);
      if (this.pairs) this.logger.error({ route: this.route, err: problem }, 'credential file unusable; route refuses requests until fixed');
      else this.logger.error({ route: this.route, err: problem }, 'credential file unusable at start; route refuses requests');
      this.unavailable = refuse('credential_unavailable', `Upstream credential for route '${this.route}' is unavailable: ${problem}`);
      this.pairs = undefined;
      return false;
    }
    const changed = this.pairs !== undefined;
    this.pairs = pairs;
    this.secrets = secrets;
    this.logger.info({ route: this.route, headers: this.headers.map((h) => h.name) }, changed ? 'credentials reloaded' : 'credentials loaded');
    return true;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }
}

/**
 * The secret and the forms an echoing upstream could encode it in, computed once per load:
 * percent-encoding (when it differs: keys with `+`, `/`, `=` ...; upper- and lower-case escapes),
 * lower- and upper-case hex, and standard and URL-safe base64 at each of the three alignments.
 * In base64, the secret's bytes at offset k (mod 3) of a larger string yield the characters
 * whose 6 bits lie wholly within the secret; those are the same whatever surrounds it, so the
 * secret is found inside `base64("Bearer " + secret)` or a base64-encoded JSON echo too.
 */
export function scrubForms(secret: Buffer): Buffer[] {
  const forms = new Set<string>([secret.toString('latin1'), secret.toString('hex'), secret.toString('hex').toUpperCase()]);
  const percent = [...secret].map((b) => (UNRESERVED_BYTE[b] ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
  forms.add(percent);
  forms.add(percent.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()));
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), secret, Buffer.alloc(2)]);
    const first = Math.ceil((8 * k) / 6);
    const end = Math.floor((8 * (k + secret.length)) / 6);
    const standard = padded.toString('base64').slice(first, end);
    if (standard.length < MIN_ENCODED_FORM) continue;
    forms.add(standard);
    forms.add(standard.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...forms].map((f) => Buffer.from(f, 'latin1'));
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
