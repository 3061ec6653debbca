/**
 * Metered model-API routes: reads token usage from each response as it streams to the agent,
 * prices it, and settles the up-front reservation against the actual cost. A response whose
 * usage cannot be read keeps the reservation charged (fail closed: unreadable usage costs the
 * agent, never the operator) and is counted; provider error responses carry no usage and are
 * free.
 */
import { Transform as StreamTransform, type Transform, type TransformCallback } from 'node:stream';
import { bodyEncoding, createBodyDecoder } from '../budget/usage/decode.js';
import type { MeteringConfig } from '../config/types.js';
import { SecretScanner, scrubHeaders } from './credentials.js';
import { ResponseFilter } from './response-filter.js';
import { createUsageMeter } from '../budget/usage/meter.js';
import { usageCostUsd, type TokenUsage } from '../budget/usage/types.js';
import type { Logger } from '../lib/log.js';
import { errorMessage } from '../errors.js';

/** What metering counts (the admin server's operations metrics satisfy it structurally). */
export interface MeteringMetrics {
  spent(agent: string, source: 'action' | 'metered', usd: number): void;
  tokensMetered(route: string, input: number, output: number): void;
  usageUnmetered(route: string, reason: string): void;
}

export interface MeterOutcome {
  /** What the response cost (USD); the reservation when usage was unreadable. */
  costUsd: number;
  usage?: TokenUsage;
  problem?: string;
}

/**
 * Starts metering one response; returns the chunk observer and the end callback for the
 * response filter. `onSettled` runs once with the outcome.
 */
export function meterResponse(
  config: MeteringConfig,
  route: string,
  status: number,
  headers: Record<string, string | string[]>,
  deps: { operationsMetrics: MeteringMetrics; logger: Logger },
  onSettled: (outcome: MeterOutcome) => void,
): { observe: (chunk: Buffer) => boolean; drained: () => Promise<void>; onEnd: (complete: boolean) => void } {
  const header = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v.join(', ') : v;
  };
  const contentType = header('content-type');
  const contentEncoding = header('content-encoding');
  const meter = createUsageMeter(config.provider, {
    ...(contentType ? { contentType } : {}),
    ...(contentEncoding ? { contentEncoding } : {}),
  });
  const settle = (outcome: MeterOutcome) => {
    try {
      onSettled(outcome);
    } catch (err) {
      deps.logger.error({ route, err: errorMessage(err) }, 'settling a metered response failed');
    }
  };
  return {
    observe: (chunk) => meter.push(chunk),
    drained: () => meter.drained(),
    onEnd: (complete) => {
      void Promise.resolve()
        .then(() => meter.end())
        .then(
          (result) => {
            if (result.ok) {
              const u = result.usage;
              deps.operationsMetrics.tokensMetered(route, u.inputTokens, u.outputTokens);
              settle({ costUsd: usageCostUsd(u, config), usage: u });
              return;
            }
            // Errors the provider rejected before generating anything are not billed.
            if (status >= 400 && result.reason === 'usage_missing') {
              settle({ costUsd: 0, problem: result.reason });
              return;
            }
            const reason = complete ? result.reason : 'response_incomplete';
            deps.operationsMetrics.usageUnmetered(route, reason);
            deps.logger.warn({ route, status, reason, detail: result.detail }, 'model usage unreadable: the reservation stays charged');
            // Counts seen before the failure are a lower bound: charge them when above the reservation.
            const partial = result.partial ? usageCostUsd(result.partial, config) : 0;
            settle({ costUsd: Math.max(config.reserveUsd, partial), problem: `${reason}: ${result.detail}` });
          },
          (err: unknown) => {
            deps.operationsMetrics.usageUnmetered(route, 'meter_failed');
            settle({ costUsd: config.reserveUsd, problem: `meter_failed: ${errorMessage(err)}` });
          },
        );
    },
  };
}

/** What a route holding a secret answers when the upstream's Content-Encoding cannot be undone for scanning. */
const UNSCANNABLE_BODY = (encoding: string) =>
  JSON.stringify({ error: `Upstream response with content-encoding '${encoding}' cannot be scanned for the injected credential` });

/**
 * The response stage of a route holding a secret and/or metering usage: scrubs the secret from
 * headers and body (the body may then change length, so content-length goes) and meters usage,
 * reporting each response's cost once through `onCost`. On a route holding a secret a
 * compressed body is decoded first and sent to the agent decoded; one in an encoding that
 * cannot be decoded is replaced by a 502 (it could carry the secret unseen). undefined when the
 * route needs neither.
 */
export function responseTransform(opts: {
  route: string;
  secrets: readonly Buffer[] | undefined;
  metering: MeteringConfig | undefined;
  operationsMetrics: MeteringMetrics | undefined;
  logger: Logger;
  onCost: (usd: number) => void;
}): (status: number, headers: Record<string, string | string[]>) => ResponseRewrite | undefined {
  return (status, headers) => {
    const scanner = opts.secrets && opts.secrets.length ? new SecretScanner(opts.secrets) : undefined;
    let out = headers;
    let decoder: ((firstByte: number) => Transform) | undefined;
    if (scanner) {
      out = scrubHeaders(headers, opts.secrets!);
      delete out['content-length'];
      const contentEncoding = headers['content-encoding'];
      const encoding = contentEncoding === undefined ? undefined : bodyEncoding(Array.isArray(contentEncoding) ? contentEncoding.join(', ') : contentEncoding);
      if (typeof encoding === 'object') {
        opts.logger.warn({ route: opts.route, status, encoding: encoding.unsupported }, 'upstream response in an encoding the secret scanner cannot decode: replaced by a 502');
        return unscannable(encoding.unsupported, () => opts.onCost(opts.metering?.reserveUsd ?? 0));
      }
      if (encoding !== undefined) {
        decoder = (firstByte) => createBodyDecoder(encoding, firstByte);
        // The meter and the agent get the decoded body.
        delete out['content-encoding'];
        headers = { ...headers };
        delete headers['content-encoding'];
      }
    }
    const meter =
      opts.metering && opts.operationsMetrics
        ? meterResponse(opts.metering, opts.route, status, headers, { operationsMetrics: opts.operationsMetrics, logger: opts.logger }, (o) => opts.onCost(o.costUsd))
        : undefined;
    if (!scanner && !meter) return undefined;
    return {
      headers: out,
      body: new ResponseFilter({
        ...(meter ? { observe: meter.observe, drained: meter.drained, onEnd: meter.onEnd } : {}),
        ...(scanner ? { scanner } : {}),
        ...(decoder ? { decoder } : {}),
      }),
    };
  };
}

export interface ResponseRewrite {
  /** Replaces the upstream's status. */
  status?: number;
  headers: Record<string, string | string[]>;
  body: Transform;
}

/**
 * A 502 in place of a response whose body cannot be scanned. The error is complete at once (it
 * has a length); the upstream body is read and dropped.
 */
function unscannable(encoding: string, onEnd: () => void): ResponseRewrite {
  const text = UNSCANNABLE_BODY(encoding);
  const headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store' };
  return { status: 502, headers, body: new DropBody(text, onEnd) };
}

/** Emits `text` at once and drops everything written to it; `onEnd` runs once. */
class DropBody extends StreamTransform {
  private ended = false;

  constructor(
    text: string,
    private readonly onEnd: () => void,
  ) {
    super();
    this.push(text);
  }

  private settle(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
  }

  override _transform(_chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.settle();
    cb();
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.settle();
    cb(err);
  }
}
