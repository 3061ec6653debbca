/**
 * The body stage of an outbound response on routes that need one: feeds every upstream byte to
 * an observer (the usage meter) and, on routes holding a secret, passes the body through the
 * secret scanner before it reaches the agent. `onEnd` runs exactly once: `complete` is true
 * when the whole body went through, false when the exchange was cut short.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { SecretScanner } from './credentials.js';

export interface ResponseFilterOptions {
  /** Sees every upstream chunk; false means "slow down": the next chunk waits for `drained`. */
  observe?: (chunk: Buffer) => boolean | void;
  drained?: () => Promise<void>;
  scanner?: SecretScanner;
  onEnd?: (complete: boolean) => void;
}

export class ResponseFilter extends Transform {
  private ended = false;

  constructor(private readonly opts: ResponseFilterOptions) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let keepUp: boolean | void = true;
    try {
      keepUp = this.opts.observe?.(chunk);
    } catch {
      // An observer bug must not break the agent's response; the meter reports its own failures.
    }
    const out = this.opts.scanner ? this.opts.scanner.push(chunk) : chunk;
    if (keepUp === false && this.opts.drained) {
      // The observer (a decompressing meter) is behind: hold the stream, do not buffer without bound.
      this.opts.drained().then(
        () => cb(null, out.length ? out : undefined),
        () => cb(null, out.length ? out : undefined),
      );
      return;
    }
    cb(null, out.length ? out : undefined);
  }

  override _flush(cb: TransformCallback): void {
    const tail = this.opts.scanner?.end();
    this.done(true);
    cb(null, tail && tail.length ? tail : undefined);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.done(false);
    cb(err);
  }

  private done(complete: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.opts.onEnd?.(complete);
  }
}
