/**
 * `npm run bench [-- --json] [--quick] [--rounds N] [--duration S] [--warmup S] [--settle S] [--connections 1,32]`
 *
 * Measures, on loopback with keep-alive and one load generator (autocannon, in this process):
 *   (a) direct to a small app, (b) a bare pair of minimal Node mTLS proxies,
 *   (c) agent -> outbound attest-sidecar -> inbound attest-sidecar -> app.
 * Every server runs in its own child process (per-process RSS; no shared event loop with the
 * load generator), and every round runs on servers started for it (see measure). Rounds
 * interleave a, b, c so ratios compare measurements taken side by side: each round warms every
 * scenario up, then runs each in the round's order and then back, two runs of about --duration
 * seconds each; the orders are balanced, so that over six rounds (the default) every scenario
 * follows every other equally often (see roundOrder). Each measured run is a request count
 * sized to last that long, so that runs end without requests in flight and the pairs' pooled
 * connections survive (see load.ts). Each is preceded by an uncounted run of the same scenario
 * (--settle seconds): a pair idles while the other scenarios run, and its first second after
 * that is not its steady state (see runRound).
 * Exit status: 0 even when targets fail (it is a measurement); 1 on errors or a failed start.
 */
import { cpus } from 'node:os';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { killAll, median, progress, repoRoot, rssBytes, type Child } from './lib.js';
import { combineWindows, LatencySamples, runLoad, type LoadResult } from './load.js';
import { BALANCED_ROUNDS, buildReport, roundOrder, RUN_ORDER, SCENARIOS, summarize, type BenchReport, type Scenario, type ScenarioResult } from './report.js';
import { renderTable } from './table.js';
import { writeBenchFiles, type BenchFiles } from './setup.js';
import { assertAlive, proxyProcesses, startProcesses, stopProcesses, target, type Processes } from './processes.js';
import { measureConnectionCost } from './connection-cost.js';
import { measureVerifyCost } from './verify-cost.js';
import { PeakMemory, type MemoryBreakdown } from './peak-memory.js';

interface Settings {
  json: boolean;
  quick: boolean;
  rounds: number;
  durationSeconds: number;
  warmupSeconds: number;
  /** Uncounted load right before each measured run, seconds; 0: none. */
  settleSeconds: number;
  connections: number[];
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      settle: { type: 'string' },
      connections: { type: 'string' },
    },
    strict: true,
  });
  const quick = values.quick ?? false;
  const positive = (v: string | undefined, fallback: number, name: string, zeroAllowed = false) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroAllowed)) throw new Error(`bench: --${name} must be ${zeroAllowed ? '0 or ' : ''}a positive number`);
    return n;
  };
  const connections = (values.connections ?? (quick ? '1,4' : '1,32')).split(',').map((c) => Math.round(positive(c, 1, 'connections')));
  return {
    json: values.json ?? false,
    quick,
    rounds: Math.round(positive(values.rounds, quick ? 1 : BALANCED_ROUNDS, 'rounds')),
    durationSeconds: positive(values.duration, quick ? 0.5 : 2, 'duration'),
    warmupSeconds: positive(values.warmup, quick ? 0.25 : 1, 'warmup'),
    settleSeconds: positive(values.settle, quick ? 0.1 : 0.5, 'settle', true),
    connections,
  };
}


/** The servers one round runs on. */
interface Instance {
  procs: Processes;
  /** Every proxy process: those a run does not use are its background (see LoadOptions). */
  proxies: Child[];
}


/**
 * Measures every scenario at every connection count, one round at a time, each round on servers
 * started for it and stopped after it (the last round's are left running, in `live`, for the
 * connection-cost measurement). Why fresh processes: the same code in two processes runs at
 * different speeds for the processes' whole life, so one start per run would make every ratio
 * one draw of that. A round per start makes the medians over rounds a median over starts.
 */
async function measure(
  settings: Settings,
  f: BenchFiles,
  root: string,
  live: { procs?: Processes },
): Promise<{
  results: ScenarioResult[];
  rssIdle: Record<string, number>;
  rssLoad: Record<string, number>;
  rssPeak: Record<string, MemoryBreakdown>;
  instances: Record<string, number>[];
}> {
  const rssIdle: Record<string, number> = {};
  const rssLoad: Record<string, number> = {};
  const instances: Record<string, number>[] = [];
  const p = f.ports;
  const metrics = (port: number) => `http://127.0.0.1:${port}/metrics`;
  const peak = new PeakMemory({
    'sidecar-outbound': metrics(p.agentAdmin),
    'sidecar-inbound': metrics(p.serviceAdmin),
    'attested-inbound': metrics(p.attestedInboundAdmin),
    'attested-outbound': metrics(p.attestedAdmin),
    'fresh-outbound': metrics(p.freshAdmin),
  });
  // Per connection count, each scenario's combined run of every round.
  const perScenario = new Map(settings.connections.map((c) => [c, new Map<Scenario, LoadResult[]>(SCENARIOS.map((s) => [s, []]))]));
  // Each scenario's recent req/s per connection count: sizes its next counted run (see load.ts) to
  // last about `durationSeconds`. Only the size depends on it; the rate reported is measured anew.
  const rate = new Map<string, number[]>();
  for (let round = 0; round < settings.rounds; round++) {
    progress(`round ${round + 1}/${settings.rounds}: starting app, bare pairs and sidecars`);
    const procs = (live.procs = await startProcesses(f, root));
    const proxies = proxyProcesses(procs);
    instances.push(Object.fromEntries(Object.values(procs).map((c) => [c.name, c.pid])));
    // "At start": the highest over the rounds' starts, like "under load".
    for (const c of proxies) rssIdle[c.name] = Math.max(rssIdle[c.name] ?? 0, rssBytes(c.pid) ?? 0);
    await peak.warm();
    const instance: Instance = { procs, proxies };
    for (const connections of settings.connections) {
      const rates = (s: Scenario) => rate.get(`${s}@${connections}`) ?? rate.set(`${s}@${connections}`, []).get(`${s}@${connections}`)!;
      await warmUp(settings, f, instance, connections, rates);
      const combined = await runRound(settings, f, instance, connections, round, rates, peak, rssLoad);
      for (const s of SCENARIOS) perScenario.get(connections)!.get(s)!.push(combined.get(s)!);
    }
    assertAlive(procs);
    if (round < settings.rounds - 1) {
      await stopProcesses(procs);
      live.procs = undefined;
    }
  }
  const results: ScenarioResult[] = [];
  for (const connections of settings.connections) {
    for (const s of SCENARIOS) results.push(summarize(s, connections, perScenario.get(connections)!.get(s)!));
  }
  return { results, rssIdle, rssLoad, rssPeak: Object.fromEntries(peak.peaks), instances };
}

/** Requests for about `seconds` at the scenario's recent rate (the median of its last three). */
function amountFor(rates: number[], seconds: number): number {
  return Math.round(median(rates.slice(-3)) * seconds);
}

/**
 * Warms every scenario of a fresh instance at one connection count: a timed run (at most 1 s)
 * to learn the rate, then a counted one of `warmupSeconds`. The timed run ends with requests in
 * flight, and the counted one reopens (and warms) the connections that cost.
 */
async function warmUp(settings: Settings, f: BenchFiles, instance: Instance, connections: number, rates: (s: Scenario) => number[]): Promise<void> {
  for (const s of RUN_ORDER) {
    progress(`warm-up ${s} @${connections}`);
    const t = target(s, f, instance.procs);
    const headers = t.headers ? { headers: t.headers } : {};
    rates(s).push((await runLoad({ url: t.url, connections, durationSeconds: Math.min(1, settings.warmupSeconds), ...headers })).reqPerSec);
    rates(s).push((await runLoad({ url: t.url, connections, amount: amountFor(rates(s), settings.warmupSeconds), ...headers })).reqPerSec);
  }
}

/**
 * One round at one connection count: the round's order (a Williams square: over six rounds each
 * scenario follows every other once, see roundOrder) forwards, then backwards, so a scenario's
 * two runs are centred on the same moment and a steady drift in the machine's speed (a shared VM)
 * cancels within the round. Returns each scenario's two runs combined.
 */
async function runRound(
  settings: Settings,
  f: BenchFiles,
  instance: Instance,
  connections: number,
  round: number,
  rates: (s: Scenario) => number[],
  peak: PeakMemory,
  rssLoad: Record<string, number>,
): Promise<Map<Scenario, LoadResult>> {
  const order = roundOrder(round);
  const windows = new Map<Scenario, LoadResult[]>(SCENARIOS.map((s) => [s, []]));
  const latencies = new Map<Scenario, LatencySamples>(SCENARIOS.map((s) => [s, new LatencySamples()]));
  for (const s of [...order, ...[...order].reverse()]) {
    const t = target(s, f, instance.procs);
    const headers = t.headers ? { headers: t.headers } : {};
    // A pair idled while the other scenarios ran. Right after a burst V8 gives pooled heap pages
    // back to the OS and the next burst faults them in; the settle run takes that transient, so
    // no measured run starts right after an idle gap.
    const settle = settings.settleSeconds > 0 ? await runLoad({ url: t.url, connections, amount: amountFor(rates(s), settings.settleSeconds), ...headers }) : undefined;
    const r = await runLoad({
      url: t.url,
      connections,
      amount: amountFor(rates(s), settings.durationSeconds),
      ...headers,
      watch: t.watch.map((c) => ({ name: c.name, pid: c.pid })),
      background: instance.proxies.filter((c) => !t.watch.includes(c)).map((c) => c.pid),
      onRssSample: peak.observe,
      latencies: latencies.get(s)!,
    });
    progress(
      `round ${round + 1}/${settings.rounds} ${s} @${connections}: ${r.reqPerSec.toFixed(0)} req/s, ` +
        `${r.requests} in ${r.elapsedSeconds.toFixed(2)} s, p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, errors ${r.errors}, non2xx ${r.non2xx}` +
        (r.steal !== undefined ? `, steal ${(r.steal * 100).toFixed(1)}%` : '') +
        (r.cpu ? `, CPU/req ${(r.cpu.proxiesNs / r.cpu.responses / 1000).toFixed(1)} us (load generator ${(r.cpu.loadgenNs / r.cpu.responses / 1000).toFixed(1)})` : '') +
        (r.cpu?.backgroundNs !== undefined ? `, other proxies ${((r.cpu.backgroundNs / r.cpu.wallNs!) * 1000).toFixed(0)} ms/s` : '') +
        Object.entries(r.maxRss).map(([name, v]) => `, ${name} ${(v / 2 ** 20).toFixed(1)} MiB`).join(''),
    );
    await peak.collect(); // between runs, never during one (see PeakMemory.collect)
    if (settle && (settle.errors > 0 || settle.non2xx > 0)) {
      // Not measured, but a failed request is a failure wherever it happens: the run reports it.
      r.errors += settle.errors;
      r.non2xx += settle.non2xx;
      r.firstError ??= settle.firstError;
      progress(`settle run before it: errors ${settle.errors}, non2xx ${settle.non2xx}${settle.firstError ? ` (${settle.firstError})` : ''}`);
    }
    windows.get(s)!.push(r);
    rates(s).push(r.reqPerSec);
    for (const [name, v] of Object.entries(r.maxRss)) rssLoad[name] = Math.max(rssLoad[name] ?? 0, v);
  }
  return new Map(SCENARIOS.map((s) => [s, combineWindows(windows.get(s)!, latencies.get(s)!)]));
}

function emit(settings: Settings, report: BenchReport | { ok: false; error: string }): void {
  if (settings.json) process.stdout.write(JSON.stringify(report) + '\n');
  else if ('targets' in report) process.stdout.write(renderTable(report));
  else process.stderr.write(`[bench] FAILED: ${report.error}\n`);
}

async function main(): Promise<number> {
  const settings = parseSettings(process.argv.slice(2));
  const root = repoRoot();
  let files: BenchFiles | undefined;
  const live: { procs?: Processes } = {};
  try {
    files = await writeBenchFiles();
    const dir = files.dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true })); // also after SIGINT
    progress(`files in ${files.dir}`);
    const { results, rssIdle, rssLoad, rssPeak, instances } = await measure(settings, files, root, live);
    progress('new mTLS connection cost per inbound listener');
    const connectionCost = await measureConnectionCost(files, settings.quick ? 20 : 200);
    progress('verification cost per evidence type');
    const verification = await measureVerifyCost(settings.quick ? 200 : 3000);
    if (live.procs) assertAlive(live.procs);
    const report = buildReport(
      {
        rounds: settings.rounds,
        durationSeconds: settings.durationSeconds,
        warmupSeconds: settings.warmupSeconds,
        settleSeconds: settings.settleSeconds,
        connections: settings.connections,
        quick: settings.quick,
      },
      { cpus: cpus().length, node: process.versions.node, platform: `${process.platform}-${process.arch}` },
      results,
      rssIdle,
      rssLoad,
      verification,
      connectionCost,
      rssPeak,
      instances,
    );
    emit(settings, report);
    return report.ok ? 0 : 1;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    emit(settings, { ok: false, error: message });
    if (settings.json) progress(`FAILED: ${message}`);
    return 1;
  } finally {
    if (live.procs) await stopProcesses(live.procs);
    killAll();
    if (files) rmSync(files.dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`[bench] fatal: ${err instanceof Error ? err.stack : String(err)}\n`);
    killAll();
    process.exitCode = 1;
  },
);
