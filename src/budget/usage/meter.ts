/**
 * Reads token usage from a model-API response body while the proxy streams it to the agent.
 * The proxy `push`es every chunk (as received, still content-encoded) and calls `end` when the
 * body is over. The meter never throws and never holds the whole body: JSON bodies are buffered
 * up to `maxBufferBytes` (they must be parsed whole); SSE bodies keep only the current event.
 * Every problem becomes a typed `UsageResult` failure, so the caller can fail closed.
 */
import type { Transform } from 'node:stream';
import { errorMessage } from '../../errors.js';
import { bodyEncoding, bodyFraming, createBodyDecoder, type BodyEncoding } from './decode.js';
import { UsageAccumulator } from './provider-formats.js';
import { SseParser, type SseEvent } from './sse.js';
import type { ModelProvider, UsageFailureReason, UsageResult } from './types.js';

export const DEFAULT_MAX_BUFFER_BYTES = 8 * 1024 * 1024;
/** Compressed bytes queued in the decompressor above which `push` asks the caller to wait. */
const DECODER_BACKLOG_HIGH_WATER = 256 * 1024;

export interface UsageMeterOptions {
  /** The response's Content-Type header. */
  contentType?: string;
  /** The response's Content-Encoding header. */
  contentEncoding?: string;
  /** Bound on a buffered (decoded) JSON body and on one SSE event; default 8 MiB. */
  maxBufferBytes?: number;
  /**
   * Bound on encoded bytes queued in the decompressor, reached only by a caller that ignores
   * push()'s backpressure signal; default 8 MiB.
   */
  maxBacklogBytes?: number;
}

export interface UsageMeter {
  /**
   * Feeds the next body chunk. Returns false when the decompressor is behind; a caller that can
   * wait should await `drained()` before the next push (a backlog over maxBacklogBytes fails
   * the meter with `usage_too_large` rather than growing).
   */
  push(chunk: Uint8Array): boolean;
  /** Resolves when the decompressor has worked off its input backlog (at once without encoding). */
  drained(): Promise<void>;
  /** The body is over (or was cut): the usage, or why there is none. Never rejects. */
  end(): Promise<UsageResult>;
  /** Decoded bytes the meter holds right now (JSON buffer, or SSE line + event data). */
  bufferedBytes(): number;
  /** The largest bufferedBytes() seen. */
  peakBufferedBytes(): number;
}

/** Where decoded bytes go: the JSON buffer or the SSE parser. */
interface BodySink {
  write(buf: Buffer): void;
  finish(): void;
  bufferedBytes(): number;
}

interface Failure {
  reason: UsageFailureReason;
  detail: string;
}

const positiveInt = (v: number | undefined, fallback: number): number =>
  v !== undefined && Number.isSafeInteger(v) && v > 0 ? v : fallback;

export function createUsageMeter(provider: ModelProvider, options: UsageMeterOptions = {}): UsageMeter {
  return new Meter(provider, options);
}

class Meter implements UsageMeter {
  private readonly usage: UsageAccumulator;
  private readonly max: number;
  private readonly maxBacklog: number;
  private readonly sink: BodySink | undefined;
  private readonly encoding: BodyEncoding | undefined;
  private decoder: Transform | undefined;
  private decoderDone: Promise<void> | undefined;
  private decodeError: string | undefined;
  private failure: Failure | undefined;
  private result: Promise<UsageResult> | undefined;
  private peak = 0;
  private sawBytes = false;

  constructor(provider: ModelProvider, options: UsageMeterOptions) {
    this.usage = new UsageAccumulator(provider);
    this.max = positiveInt(options.maxBufferBytes, DEFAULT_MAX_BUFFER_BYTES);
    this.maxBacklog = positiveInt(options.maxBacklogBytes, DEFAULT_MAX_BUFFER_BYTES);
    const framing = bodyFraming(options.contentType);
    const encoding = bodyEncoding(options.contentEncoding);
    if (typeof framing === 'object') {
      this.fail('usage_missing', `content-type ${framing.unsupported} carries no token usage`);
    } else if (typeof encoding === 'object') {
      this.fail('usage_encoding_unsupported', `content-encoding "${encoding.unsupported}" is not supported`);
    } else {
      this.encoding = encoding;
      this.sink = framing === 'sse' ? this.sseSink() : this.jsonSink();
    }
  }

  push(chunk: Uint8Array): boolean {
    try {
      if (this.result || this.failure || chunk.byteLength === 0) return true;
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      this.sawBytes = true;
      if (this.encoding === undefined) {
        this.write(buf);
        return true;
      }
      if (this.decodeError !== undefined) return true;
      const decoder = (this.decoder ??= this.startDecoder(this.encoding, buf[0]!));
      decoder.write(buf);
      if (decoder.writableLength > this.maxBacklog) {
        this.fail('usage_too_large', `decompressor backlog exceeds ${this.maxBacklog} bytes`);
        return true;
      }
      return decoder.writableLength < DECODER_BACKLOG_HIGH_WATER;
    } catch (err) {
      this.fail('usage_unreadable', `meter failed: ${errorMessage(err)}`);
      return true;
    }
  }

  drained(): Promise<void> {
    const decoder = this.decoder;
    // 'drain' comes only after a write() that returned false (writableNeedDrain).
    if (!decoder || decoder.destroyed || !decoder.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        decoder.off('drain', done).off('close', done);
        resolve();
      };
      decoder.on('drain', done).on('close', done);
    });
  }

  end(): Promise<UsageResult> {
    this.result ??= this.finish();
    return this.result;
  }

  bufferedBytes(): number {
    return this.sink?.bufferedBytes() ?? 0;
  }

  peakBufferedBytes(): number {
    return this.peak;
  }

  private async finish(): Promise<UsageResult> {
    try {
      if (this.decoder && !this.failure && this.decodeError === undefined) {
        this.decoder.end();
        await this.decoderDone;
      }
      if (!this.failure && this.decodeError === undefined) this.sink?.finish();
    } catch (err) {
      this.fail('usage_unreadable', `meter failed: ${errorMessage(err)}`);
    }
    const partial = this.usage.partial();
    const failure: Failure | undefined =
      this.failure ??
      (this.decodeError !== undefined
        ? { reason: 'usage_unreadable', detail: `${this.encoding} body could not be decoded: ${this.decodeError}` }
        : undefined);
    if (failure) return partial ? { ok: false, ...failure, partial } : { ok: false, ...failure };
    if (!this.sawBytes) return { ok: false, reason: 'usage_missing', detail: 'response body is empty' };
    return this.usage.result();
  }

  private startDecoder(encoding: BodyEncoding, firstByte: number): Transform {
    const decoder = createBodyDecoder(encoding, firstByte);
    decoder.on('data', (out: Buffer) => {
      if (!this.failure) this.write(out);
    });
    this.decoderDone = new Promise((resolve) => {
      decoder.once('end', resolve);
      decoder.once('close', resolve);
      decoder.on('error', (err: Error) => {
        this.decodeError ??= err.message;
        resolve();
      });
    });
    return decoder;
  }

  private write(buf: Buffer): void {
    try {
      this.sink!.write(buf);
    } catch (err) {
      this.fail('usage_unreadable', `meter failed: ${errorMessage(err)}`);
      return;
    }
    const held = this.sink!.bufferedBytes();
    if (held > this.peak) this.peak = held;
  }

  /** The first failure sticks; buffers and the decompressor are released at once. */
  private fail(reason: UsageFailureReason, detail: string): void {
    if (this.failure) return;
    this.failure = { reason, detail };
    this.decoder?.destroy();
  }

  private jsonSink(): BodySink {
    let chunks: Buffer[] = [];
    let size = 0;
    return {
      write: (buf) => {
        if (size + buf.length > this.max) {
          chunks = [];
          size = 0;
          this.fail('usage_too_large', `JSON body exceeds ${this.max} bytes`);
          return;
        }
        chunks.push(Buffer.from(buf)); // copy: the caller keeps ownership of its chunk
        size += buf.length;
      },
      finish: () => {
        if (size === 0) return;
        let text = Buffer.concat(chunks, size).toString('utf8');
        chunks = [];
        size = 0;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (err) {
          this.usage.markUnreadable(`body is not valid JSON: ${errorMessage(err)}`);
          return;
        }
        this.usage.observe(value);
      },
      bufferedBytes: () => size,
    };
  }

  private sseSink(): BodySink {
    const parser = new SseParser((e) => this.onSseEvent(e), this.max);
    const checkSize = (): void => {
      if (parser.tooLarge) this.fail('usage_too_large', `an event stream line or event exceeds ${this.max} bytes`);
    };
    return {
      write: (buf) => {
        parser.push(buf);
        checkSize();
      },
      finish: () => {
        parser.end();
        checkSize();
      },
      bufferedBytes: () => parser.bufferedBytes(),
    };
  }

  private onSseEvent(sseEvent: SseEvent): void {
    if (!mayCarryUsage(sseEvent.data)) return;
    let value: unknown;
    try {
      value = JSON.parse(sseEvent.data);
    } catch (err) {
      this.usage.markUnreadable(`event "${sseEvent.event}" is not valid JSON: ${errorMessage(err)}`);
      return;
    }
    this.usage.observe(value);
  }
}

/**
 * Streams are mostly content deltas; only events that can carry usage or an error are worth a
 * JSON.parse. An event is skipped when it has no `"error"` and every `"usage` in it is
 * `"usage": null` (OpenAI's chunks with include_usage) -- a text containing those words inside
 * a string only costs an unneeded parse. A key the provider wrote with escapes (`"\u0075sage"`)
 * would be missed; the configured upstream does not do that.
 */
function mayCarryUsage(data: string): boolean {
  if (data === '[DONE]') return false;
  if (data.includes('"error"')) return true;
  for (let i = data.indexOf('"usage'); i !== -1; i = data.indexOf('"usage', i + 6)) {
    if (!NULL_USAGE.test(data.slice(i, i + 24))) return true;
  }
  return false;
}

const NULL_USAGE = /^"usage"\s*:\s*null\b/;
