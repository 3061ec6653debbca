/**
 * One load measurement with autocannon's programmatic API. autocannon's own latency histogram
 * has 1 ms resolution (too coarse on loopback), so every response time (float ms, from
 * process.hrtime) is recorded from the 'response' event and percentiles are computed here.
 *
 * A measured run asks for a number of requests, not a duration. When a timed autocannon run
 * ends it destroys its connections with a request still in flight on each; each proxy then
 * closes the upstream connection that carried one, and the next run opens new mTLS connections.
 * That is connection churn, not the keep-alive steady state this bench
 * measures, and it costs a pair that refuses TLS session resumption (the sidecar) far more than
 * one that resumes (the bare pair). With a request count every connection finishes its share
 * and closes idle, so pooled upstream connections survive between runs. Throughput and latency
 * are taken over the window in which every connection is busy: from the start until the first
 * connection has had its share. autocannon's own elapsed time is rounded to 10 ms and includes
 * up to one sample tick of idle after the last response.
 */
import { createRequire } from 'node:module';
import { cpuTimes, percentile, processCpuNs, RssSampler, stealBetween } from './lib.js';

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
  duration?: number; // seconds (fractions allowed)
  amount?: number; // requests in all, spread evenly over the connections; overrides duration
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
  /** A timed run (warm-up only: it ends with requests in flight) ... */
  durationSeconds?: number;
  /** ... or a run of this many requests (measurements). */
  amount?: number;
  headers?: Record<string, string>;
  /** Processes whose max RSS is sampled during the load. */
  watch?: { name: string; pid: number }[];
  /**
   * Processes that serve other scenarios: the CPU they use during this run (a collection or a
   * write left over from their own run) is CPU this run's processes did not get.
   */
  background?: number[];
  /** Sees every RSS sample of the watched processes (see peak-memory.ts). */
  onRssSample?: (name: string, pid: number, rss: number) => void;
  /** Also records every measured latency here (to combine several runs: see combineWindows). */
  latencies?: LatencySamples;
}

export interface LoadResult {
  /** 2xx responses in the measured window. */
  requests: number;
  /** The measured window: start to the last response of a timed run, or until the first connection is done. */
  elapsedSeconds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Transport errors (including timeouts) + body mismatches. */
  errors: number;
  non2xx: number;
  firstError?: string;
  /** Max VmRSS (bytes) per watched process during this load. */
  maxRss: Record<string, number>;
  /**
   * Share of the machine's CPU time that the hypervisor gave to other guests during the run
   * (/proc/stat steal; absent off Linux). A shared VM's throughput falls with it, whatever runs.
   */
  steal?: number;
  /** CPU used over the whole run (see RunCpu); absent where it cannot be read. */
  cpu?: RunCpu;
}

/**
 * CPU time over a run, from start to the last response (the tail after the measured window
 * included, so `responses` counts every response of the run): the watched processes together
 * (a pair's two proxies) and the load generator (this process). The load generator does the
 * same work per response in every scenario, so its CPU per response gauges the VM's speed at
 * that moment (the report divides by it).
 */
export interface RunCpu {
  proxiesNs: number;
  loadgenNs: number;
  responses: number;
  /** CPU of the `background` processes during the run, and the run's length (ns both). */
  backgroundNs?: number;
  wallNs?: number;
}

/** Growable float buffer: no per-sample allocation on the hot path. */
export class LatencySamples {
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
  const samples = new LatencySamples();
  const shared = opts.latencies;
  const sampler = new RssSampler(opts.watch ?? [], 100, opts.onRssSample);
  let firstError: string | undefined;
  if ((opts.amount === undefined) === (opts.durationSeconds === undefined)) throw new Error('runLoad: give exactly one of amount and durationSeconds');
  sampler.start();
  const watched = (opts.watch ?? []).map((w) => w.pid);
  const cpuOf = (pids: number[]) => pids.reduce<number | undefined>((sum, pid) => {
    const ns = processCpuNs(pid);
    return sum === undefined || ns === undefined ? undefined : sum + ns;
  }, 0);
  const proxiesCpu = () => cpuOf(watched);
  const background = opts.background ?? [];
  const backgroundAtStart = background.length ? cpuOf(background) : undefined;
  const wallAtStart = process.hrtime.bigint();
  const proxiesAtStart = proxiesCpu();
  const loadgenAtStart = processCpuNs('self');
  const cpuAtStart = cpuTimes();
  const start = performance.now();
  let last = start;
  // A counted run is measured until the first connection has had its share: from then on
  // fewer connections are busy, and a pair that serves its connections less evenly would be
  // charged for that tail rather than for its throughput.
  let windowEnd: number | undefined;
  let ok = 0;
  let responses = 0;
  const answered = new Map<object, number>();
  let result: AutocannonResult;
  try {
    const instance = autocannon({
      url: opts.url,
      connections: opts.connections,
      ...(opts.amount !== undefined ? { amount: Math.max(opts.amount, opts.connections) } : { duration: opts.durationSeconds! }),
      pipelining: 1,
      timeout: 10,
      // autocannon only checks its stop flag on each sample tick (default 1 s): tick often so
      // short runs (--quick) last what they are asked to.
      sampleInt: 100,
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    instance.on('response', (client, statusCode, _bytes, ms) => {
      responses++;
      if (windowEnd !== undefined) return; // the tail: some connections are done
      last = performance.now();
      if (statusCode >= 200 && statusCode < 300) {
        samples.push(ms);
        shared?.push(ms);
        ok++;
      } else firstError ??= `HTTP ${statusCode}`;
      if (opts.amount === undefined) return;
      const c = client as { responseMax?: number };
      const n = (answered.get(c) ?? 0) + 1;
      answered.set(c, n);
      if (c.responseMax !== undefined && n >= c.responseMax) windowEnd = last;
    });
    instance.on('reqError', (err) => {
      firstError ??= err.message;
    });
    result = await instance;
  } finally {
    sampler.stop();
  }
  const proxiesAtEnd = proxiesCpu();
  const loadgenAtEnd = processCpuNs('self');
  const backgroundAtEnd = background.length ? cpuOf(background) : undefined;
  const wallNs = Number(process.hrtime.bigint() - wallAtStart);
  const cpu: RunCpu | undefined =
    watched.length && responses > 0 && proxiesAtStart !== undefined && proxiesAtEnd !== undefined && loadgenAtStart !== undefined && loadgenAtEnd !== undefined
      ? {
          proxiesNs: proxiesAtEnd - proxiesAtStart,
          loadgenNs: loadgenAtEnd - loadgenAtStart,
          responses,
          ...(backgroundAtStart !== undefined && backgroundAtEnd !== undefined ? { backgroundNs: backgroundAtEnd - backgroundAtStart, wallNs } : {}),
        }
      : undefined;
  const steal = stealBetween(cpuAtStart, cpuTimes());
  const sorted = samples.sorted();
  const elapsedSeconds = (last - start) / 1000;
  return {
    requests: ok,
    elapsedSeconds,
    reqPerSec: elapsedSeconds > 0 ? ok / elapsedSeconds : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: result.errors + result.mismatches, // autocannon's errors already include timeouts
    non2xx: result.non2xx,
    ...(firstError ? { firstError } : {}),
    maxRss: Object.fromEntries(sampler.max),
    ...(steal !== undefined ? { steal } : {}),
    ...(cpu ? { cpu } : {}),
  };
}

/**
 * One result for several counted runs of the same scenario (the windows of a round, see
 * run.ts): requests and time add up, so req/s is the rate over all of them; p50 and p99 come
 * from every latency they recorded into `latencies`; errors add up; RSS is the maximum.
 */
export function combineWindows(windows: readonly LoadResult[], latencies: LatencySamples): LoadResult {
  if (windows.length === 0) throw new Error('combineWindows: no runs to combine');
  const requests = windows.reduce((n, w) => n + w.requests, 0);
  const elapsedSeconds = windows.reduce((n, w) => n + w.elapsedSeconds, 0);
  const sorted = latencies.sorted();
  const maxRss: Record<string, number> = {};
  for (const w of windows) for (const [name, v] of Object.entries(w.maxRss)) maxRss[name] = Math.max(maxRss[name] ?? 0, v);
  const firstError = windows.find((w) => w.firstError !== undefined)?.firstError;
  // Weighted by each run's length: the steal over the runs' time together.
  const timed = windows.filter((w) => w.steal !== undefined);
  const timedSeconds = timed.reduce((n, w) => n + w.elapsedSeconds, 0);
  const steal = timedSeconds > 0 ? timed.reduce((n, w) => n + w.steal! * w.elapsedSeconds, 0) / timedSeconds : undefined;
  // CPU adds up over the runs, but only if every run has it (a partial sum would be compared
  // with whole ones).
  const cpu = windows.every((w) => w.cpu)
    ? windows.reduce<RunCpu>((sum, w) => {
        const next: RunCpu = { proxiesNs: sum.proxiesNs + w.cpu!.proxiesNs, loadgenNs: sum.loadgenNs + w.cpu!.loadgenNs, responses: sum.responses + w.cpu!.responses };
        if (sum.backgroundNs !== undefined && w.cpu!.backgroundNs !== undefined) {
          next.backgroundNs = sum.backgroundNs + w.cpu!.backgroundNs;
          next.wallNs = sum.wallNs! + w.cpu!.wallNs!;
        }
        return next;
      }, { proxiesNs: 0, loadgenNs: 0, responses: 0, backgroundNs: 0, wallNs: 0 })
    : undefined;
  return {
    requests,
    elapsedSeconds,
    reqPerSec: elapsedSeconds > 0 ? requests / elapsedSeconds : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: windows.reduce((n, w) => n + w.errors, 0),
    non2xx: windows.reduce((n, w) => n + w.non2xx, 0),
    ...(firstError !== undefined ? { firstError } : {}),
    maxRss,
    ...(steal !== undefined ? { steal } : {}),
    ...(cpu ? { cpu } : {}),
  };
}
