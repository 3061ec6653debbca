/**
 * The body stage of an outbound response on routes that need one: feeds every upstream byte to
 * an observer (the usage meter) and, on routes holding a secret, passes the body through the
 * secret scanner before it reaches the agent. With a `decoder` (a compressed response on a route
 * holding a secret), the body is decompressed first: the observer and the scanner see, and the
 * agent receives, the decoded bytes. `onEnd` runs exactly once: `complete` is true when the whole
 * body went through, false when the exchange was cut short (or could not be decoded).
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { SecretScanner } from './credentials.js';

export interface ResponseFilterOptions {
  /** Sees every upstream chunk; false means "slow down": the next chunk waits for `drained`. */
  observe?: (chunk: Buffer) => boolean | void;
  drained?: () => Promise<void>;
  scanner?: SecretScanner;
  /** Makes the decompressor undoing the response's Content-Encoding (given the body's first byte). */
  decoder?: (firstByte: number) => Transform;
  onEnd?: (complete: boolean) => void;
}

export class ResponseFilter extends Transform {
  private ended = false;
  private decoder: Transform | undefined;
  private decoderEnded: (() => void) | undefined;

  constructor(private readonly opts: ResponseFilterOptions) {
    super();
  }

  private startDecoder(makeDecoder: (firstByte: number) => Transform, firstByte: number): Transform {
    const decoder = makeDecoder(firstByte);
    decoder.on('data', (out: Buffer) => {
      this.observe(out);
      const scanned = this.scan(out);
      // The agent is slower than the decompressor: stop inflating until it reads (see _read).
      if (scanned.length && !this.push(scanned)) decoder.pause();
    });
    decoder.on('error', (err: Error) => this.destroy(new Error(`response body could not be decoded: ${err.message}`)));
    decoder.once('end', () => this.decoderEnded?.());
    return decoder;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.opts.decoder && chunk.length) {
      const decoder = (this.decoder ??= this.startDecoder(this.opts.decoder, chunk[0]!));
      // The callback runs once the decompressor has taken the chunk: that bounds what is queued.
      decoder.write(chunk, (err) => cb(err ?? null));
      return;
    }
    const keepUp = this.observe(chunk);
    const out = this.scan(chunk);
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

  override _read(size: number): void {
    this.decoder?.resume();
    super._read(size);
  }

  override _flush(cb: TransformCallback): void {
    const finish = () => {
      const tail = this.opts.scanner?.end();
      this.done(true);
      cb(null, tail && tail.length ? tail : undefined);
    };
    const decoder = this.decoder;
    if (!decoder) return finish();
    this.decoderEnded = finish;
    decoder.end();
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.decoder?.destroy();
    this.done(false);
    cb(err);
  }

  private observe(chunk: Buffer): boolean | void {
    try {
      return this.opts.observe?.(chunk);
    } catch {
      // An observer bug must not break the agent's response; the meter reports its own failures.
      return true;
    }
  }

  private scan(chunk: Buffer): Buffer {
    return this.opts.scanner ? this.opts.scanner.push(chunk) : chunk;
  }

  private done(complete: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.opts.onEnd?.(complete);
  }
}
