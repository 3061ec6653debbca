/**
 * One load measurement with autocannon's programmatic API. autocannon's own latency histogram
 * has 1 ms resolution (too coarse on loopback), so every response time (float ms, from
 * process.hrtime) is recorded from the 'response' event and percentiles are computed here.
 */
import { createRequire } from 'node:module';
import { percentile, RssSampler } from './lib.js';

interface AutocannonResult {
  duration: number; // seconds
  errors: number;
  non2xx: number;
  mismatches: number;
  '2xx': number;
}

interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', fn: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): this;
  on(event: 'reqError', fn: (err: Error) => void): this;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number; // seconds (fractions allowed)
  pipelining: number;
  headers?: Record<string, string>;
  timeout?: number; // seconds
  sampleInt?: number; // ms
}

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (opts: AutocannonOptions) => AutocannonInstance;

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  headers?: Record<string, string>;
  /** Processes whose max RSS is sampled during the load. */
  watch?: { name: string; pid: number }[];
}

export interface LoadResult {
  requests: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Transport errors (including timeouts) + body mismatches. */
  errors: number;
  non2xx: number;
  firstError?: string;
  /** Max VmRSS (bytes) per watched process during this load. */
  maxRss: Record<string, number>;
}

/** Growable float buffer: no per-sample allocation on the hot path. */
class Samples {
  private buf = new Float64Array(1 << 14);
  length = 0;

  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }

  sorted(): Float64Array {
    return this.buf.slice(0, this.length).sort();
  }
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const samples = new Samples();
  const sampler = new RssSampler(opts.watch ?? []);
  let firstError: string | undefined;
  sampler.start();
  let result: AutocannonResult;
  try {
    const instance = autocannon({
      url: opts.url,
      connections: opts.connections,
      duration: opts.durationSeconds,
      pipelining: 1,
      timeout: 10,
      // autocannon only checks its stop flag on each sample tick (default 1 s): tick often so
      // short runs (--quick) last what they are asked to.
      sampleInt: 100,
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode >= 200 && statusCode < 300) samples.push(ms);
      else firstError ??= `HTTP ${statusCode}`;
    });
    instance.on('reqError', (err) => {
      firstError ??= err.message;
    });
    result = await instance;
  } finally {
    sampler.stop();
  }
  const sorted = samples.sorted();
  const ok = result['2xx'];
  return {
    requests: ok,
    reqPerSec: result.duration > 0 ? ok / result.duration : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: result.errors + result.mismatches, // autocannon's errors already include timeouts
    non2xx: result.non2xx,
    ...(firstError ? { firstError } : {}),
    maxRss: Object.fromEntries(sampler.max),
  };
}
