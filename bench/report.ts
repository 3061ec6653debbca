/**
 * Turns per-round measurements into the benchmark report: medians over rounds, ratios between
 * scenarios and the targets with PASS/FAIL (table.ts lays it out for people).
 */
import type { LoadResult, RunCpu } from './load.js';
import { median } from './lib.js';
import type { ConnectionCost } from './connection-cost.js';
import type { VerifyCost } from './verify-cost.js';
import type { MemoryBreakdown } from './peak-memory.js';

/** In the order the report lists them. */
export const SCENARIOS = ['direct', 'reference', 'control', 'sidecar', 'attested', 'fresh'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** The scenarios as numbered for the run orders (see roundOrder) and the warm-up order. */
export const RUN_ORDER: readonly Scenario[] = ['direct', 'control', 'reference', 'sidecar', 'attested', 'fresh'];

/**
 * The order round `round` runs the scenarios in (then back): the rows of a Williams square over
 * RUN_ORDER. Each row is the first shifted by the round number, and the first row's steps
 * (+1, +4, +3, +2, +5 modulo 6) are all different, so over six rounds every scenario runs right
 * after every other exactly once going forwards (and once coming back), and in every position
 * once. Whatever a run leaves behind (a collection, pages given back, a write) then falls on
 * every scenario alike, instead of on whichever one follows it in a fixed order.
 */
export function roundOrder(round: number): Scenario[] {
  const n = RUN_ORDER.length;
  // 0, 1, n-1, 2, n-2, ...: the standard first row for an even number of treatments.
  const first = Array.from({ length: n }, (_, i) => (i === 0 ? 0 : i % 2 === 1 ? (i + 1) / 2 : n - i / 2));
  return first.map((k) => RUN_ORDER[(k + round) % n]!);
}

/** Rounds that make one full Williams square (see roundOrder). */
export const BALANCED_ROUNDS = RUN_ORDER.length;

export const SCENARIO_LETTER: Record<Scenario, string> = { direct: 'a', reference: 'b', control: "b'", sidecar: 'c', attested: 'd', fresh: 'e' };

export const SCENARIO_LABEL: Record<Scenario, string> = {
  direct: '(a) direct to app',
  reference: '(b) bare mTLS proxy pair',
  control: "(b') same, second copy",
  sidecar: '(c) attest-sidecar pair',
  attested: '(d) + attestation, session',
  fresh: '(e) + attestation, per_request',
};

export interface ScenarioResult {
  scenario: Scenario;
  connections: number;
  /** Medians over rounds. */
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Sums over rounds. */
  requests: number;
  errors: number;
  non2xx: number;
  firstError?: string;
  /** Median over rounds of the VM's steal (share of CPU time given to other guests), if known. */
  steal?: number;
  /** Medians over rounds of CPU per request, us: the pair's two proxies (all threads) and the load generator. Pairs only. */
  cpuUsPerRequest?: { proxies: number; loadgen: number };
  /** Median over rounds of the CPU the other scenarios' proxies used during this one's runs, ms per s. */
  backgroundMsPerSecond?: number;
  rounds: { reqPerSec: number; p50Ms: number; p99Ms: number; steal?: number; cpu?: RunCpu }[];
}

export interface Ratios {
  connections: number;
  reqPerSec: { cOverA: number; cOverB: number };
  /** c/b req/s of each round counted, in round order: its spread is how much the median can be trusted. */
  cOverBPerRound: number[];
  /** Rounds left out of c/b for steal (see comparableRounds), of all rounds measured. */
  cOverBStolenRounds: { left: number; of: number };
  /**
   * The A/A control: b'/b req/s (median, and each round counted), two identical bare pairs taken
   * like c/b. How far it lies from 1 is how far this run's noise moves a ratio of two pairs.
   */
  control: { overB: number; perRound: number[] };
  /**
   * CPU per request of the pair's proxies, c over b and (the A/A control) b' over b, paired per
   * round over the same rounds as req/s. Each run's CPU per request is first divided by the load
   * generator's in that run, which does the same work per request in every scenario and so
   * gauges how fast the VM ran then, as long as it is busy: at one connection its CPU per
   * request follows the path's latency (an idle wake-up per response) more than the VM's speed,
   * so the raw ratios (`raw`, CPU per request as measured) are given too. Absent where CPU could
   * not be read (not Linux).
   */
  cpu?: { cOverB: number; cOverBPerRound: number[]; controlOverB: number; controlOverBPerRound: number[]; raw: { cOverB: number; controlOverB: number } };
  p50: { cOverA: number; cOverB: number };
  /** Latency the proxy pair adds over the direct path (median p50 difference), ms. */
  addedP50Ms: { reference: number; sidecar: number };
  /** Median over rounds of (c-a)/(b-a) p50: the sidecar pair's added latency over the bare pair's. */
  addedP50Ratio: number;
  /** Attestation: warm session vs attestation disabled (d/c), and per_request vs session (e/d). */
  attestation: { sessionOverDisabled: number; perRequestOverSession: number };
}

export interface Target {
  name: string;
  value: number;
  limit: string;
  pass: boolean;
}

export interface BenchReport {
  settings: { rounds: number; durationSeconds: number; warmupSeconds: number; settleSeconds: number; connections: number[]; quick: boolean };
  machine: { cpus: number; node: string; platform: string };
  results: ScenarioResult[];
  ratios: Ratios[];
  /** Per proxy process, MiB: VmRSS once ready (before any load; the highest over the rounds' starts) and the max sampled under load. */
  rssMiB: Record<string, { idle: number; underLoad: number }>;
  /** The pid of every server, per round: each round runs on processes started for it. */
  instances: Record<string, number>[];
  /** Sidecars only: what their RSS was made of at the highest sample explained (peak-memory.ts). */
  rssPeak: Record<string, MemoryBreakdown>;
  /** In-process verification cost per evidence type vs a bare P-384 verify. */
  verification: VerifyCost[];
  /** A new mTLS connection with one request, per inbound listener (not a target: see connection-cost.ts). */
  connectionCost: ConnectionCost[];
  targets: Target[];
  errors: number;
  non2xx: number;
  ok: boolean;
}

const MIB = 1024 * 1024;
const RSS_LIMIT_MIB = 128;

export function summarize(scenario: Scenario, connections: number, rounds: LoadResult[]): ScenarioResult {
  const firstError = rounds.find((r) => r.firstError)?.firstError;
  const steals = rounds.flatMap((r) => (r.steal !== undefined ? [r.steal] : []));
  const cpu = rounds.every((r) => r.cpu && r.cpu.responses > 0)
    ? {
        proxies: median(rounds.map((r) => r.cpu!.proxiesNs / r.cpu!.responses / 1000)),
        loadgen: median(rounds.map((r) => r.cpu!.loadgenNs / r.cpu!.responses / 1000)),
      }
    : undefined;
  const background = rounds.every((r) => r.cpu?.backgroundNs !== undefined && r.cpu.wallNs! > 0)
    ? median(rounds.map((r) => (r.cpu!.backgroundNs! / r.cpu!.wallNs!) * 1000))
    : undefined;
  return {
    scenario,
    connections,
    reqPerSec: median(rounds.map((r) => r.reqPerSec)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    requests: rounds.reduce((s, r) => s + r.requests, 0),
    errors: rounds.reduce((s, r) => s + r.errors, 0),
    non2xx: rounds.reduce((s, r) => s + r.non2xx, 0),
    ...(firstError ? { firstError } : {}),
    ...(steals.length ? { steal: median(steals) } : {}),
    ...(cpu && rounds.length ? { cpuUsPerRequest: cpu } : {}),
    ...(background !== undefined && rounds.length ? { backgroundMsPerSecond: background } : {}),
    rounds: rounds.map((r) => ({
      reqPerSec: r.reqPerSec,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      ...(r.steal !== undefined ? { steal: r.steal } : {}),
      ...(r.cpu ? { cpu: r.cpu } : {}),
    })),
  };
}

/**
 * Ratios are paired per round (each round measures every scenario back to back), then the
 * median of those per-round ratios is reported: slow drifts in background load (a shared VM)
 * cancel out within a round instead of skewing one scenario's median against another's.
 *
 * A round in which either scenario of a pair lost more than HIGH_STEAL of the machine's CPU to
 * other guests measured the hypervisor as much as the proxies, so it is left out of that pair's median, provided at least half the rounds
 * (and at least MIN_CLEAN_ROUNDS) remain. Otherwise every round counts, and the steal warning
 * says the run is not comparable. Both sides of a pair are dropped together, never one.
 */
type Pairing = (xi: ScenarioResult['rounds'][number], yi: ScenarioResult['rounds'][number]) => number;

/** A round whose runs lost more than this to steal is left out of ratios and counted in the warning. */
export const HIGH_STEAL = 0.1;
const MIN_CLEAN_ROUNDS = 3;

const stolen = (r: ScenarioResult['rounds'][number]) => r.steal !== undefined && r.steal > HIGH_STEAL;

const measuredRounds = (x: ScenarioResult, y: ScenarioResult) => Math.min(x.rounds.length, y.rounds.length);

/** Indices of the rounds a ratio of x and y is taken over (see above). */
export function comparableRounds(x: ScenarioResult, y: ScenarioResult): number[] {
  const n = measuredRounds(x, y);
  const all = Array.from({ length: n }, (_, i) => i);
  const clean = all.filter((i) => !stolen(x.rounds[i]!) && !stolen(y.rounds[i]!));
  return clean.length >= Math.max(MIN_CLEAN_ROUNDS, Math.ceil(n / 2)) ? clean : all;
}

function paired(x: ScenarioResult, y: ScenarioResult, f: Pairing): number[] {
  return comparableRounds(x, y).map((i) => f(x.rounds[i]!, y.rounds[i]!));
}

function pairedMedian(x: ScenarioResult, y: ScenarioResult, f: Pairing): number {
  return median(paired(x, y, f));
}

/** A round's proxy CPU per request (ns), as measured. */
function perRequest(r: ScenarioResult['rounds'][number]): number | undefined {
  return r.cpu && r.cpu.responses > 0 ? r.cpu.proxiesNs / r.cpu.responses : undefined;
}

/** A round's proxy CPU per request over the load generator's (see Ratios.cpu). */
function gauged(r: ScenarioResult['rounds'][number]): number | undefined {
  const cpu = r.cpu;
  return cpu && cpu.responses > 0 && cpu.loadgenNs > 0 ? cpu.proxiesNs / cpu.loadgenNs : undefined;
}

function ratiosFor(results: ScenarioResult[], connections: number): Ratios {
  const get = (s: Scenario) => results.find((r) => r.scenario === s && r.connections === connections)!;
  const a = get('direct');
  const b = get('reference');
  const bPrime = get('control');
  const c = get('sidecar');
  const d = get('attested');
  const e = get('fresh');
  const rps = (x: ScenarioResult, y: ScenarioResult) => pairedMedian(x, y, (xi, yi) => xi.reqPerSec / yi.reqPerSec);
  // A round without a CPU reading gives NaN (undefined / undefined): then no CPU ratio at all.
  const cpuRatios = (x: ScenarioResult, y: ScenarioResult, per: (r: ScenarioResult['rounds'][number]) => number | undefined) => {
    const ratios = paired(x, y, (xi, yi) => per(xi)! / per(yi)!);
    return ratios.every(Number.isFinite) ? ratios : undefined;
  };
  const cpuCOverB = cpuRatios(c, b, gauged);
  const cpuControlOverB = cpuRatios(bPrime, b, gauged);
  const rawCOverB = cpuRatios(c, b, perRequest);
  const rawControlOverB = cpuRatios(bPrime, b, perRequest);
  const p50 = (x: ScenarioResult, y: ScenarioResult) => pairedMedian(x, y, (xi, yi) => xi.p50Ms / yi.p50Ms);
  return {
    connections,
    attestation: { sessionOverDisabled: rps(d, c), perRequestOverSession: rps(e, d) },
    reqPerSec: { cOverA: rps(c, a), cOverB: rps(c, b) },
    cOverBPerRound: paired(c, b, (ci, bi) => ci.reqPerSec / bi.reqPerSec),
    cOverBStolenRounds: { left: measuredRounds(c, b) - comparableRounds(c, b).length, of: measuredRounds(c, b) },
    control: { overB: rps(bPrime, b), perRound: paired(bPrime, b, (xi, bi) => xi.reqPerSec / bi.reqPerSec) },
    ...(cpuCOverB?.length && cpuControlOverB?.length
      ? {
          cpu: {
            cOverB: median(cpuCOverB),
            cOverBPerRound: cpuCOverB,
            controlOverB: median(cpuControlOverB),
            controlOverBPerRound: cpuControlOverB,
            raw: { cOverB: median(rawCOverB!), controlOverB: median(rawControlOverB!) },
          },
        }
      : {}),
    p50: { cOverA: p50(c, a), cOverB: p50(c, b) },
    addedP50Ms: { reference: b.p50Ms - a.p50Ms, sidecar: c.p50Ms - a.p50Ms },
    addedP50Ratio: pairedMedian(c, b, (ci, bi) => {
      const ai = a.rounds[c.rounds.indexOf(ci)]!;
      return (ci.p50Ms - ai.p50Ms) / (bi.p50Ms - ai.p50Ms);
    }),
  };
}

export function buildReport(
  settings: BenchReport['settings'],
  machine: BenchReport['machine'],
  results: ScenarioResult[],
  rssIdle: Record<string, number>,
  rssLoad: Record<string, number>,
  verification: VerifyCost[] = [],
  connectionCost: ConnectionCost[] = [],
  rssPeak: Record<string, MemoryBreakdown> = {},
  instances: Record<string, number>[] = [],
): BenchReport {
  const ratios = settings.connections.map((n) => ratiosFor(results, n));
  const rssMiB: BenchReport['rssMiB'] = {};
  // In the order the processes were listed at start (rssIdle), not the order samples came in.
  const names = [...new Set([...Object.keys(rssIdle), ...Object.keys(rssLoad)])].filter((n) => n in rssLoad);
  for (const name of names) {
    rssMiB[name] = { idle: (rssIdle[name] ?? 0) / MIB, underLoad: (rssLoad[name] ?? 0) / MIB };
  }
  const low = Math.min(...settings.connections);
  const high = Math.max(...settings.connections);
  const rLow = ratios.find((r) => r.connections === low)!;
  const rHigh = ratios.find((r) => r.connections === high)!;
  const errors = results.reduce((s, r) => s + r.errors, 0);
  const non2xx = results.reduce((s, r) => s + r.non2xx, 0);
  const addedRatio = rLow.addedP50Ratio;
  // The pair under test (c) and the inbound sidecar that verifies the attested scenarios (d, e).
  // The attesting agents' outbound sidecars are shown in the table but not held to it (docs/benchmark.md).
  const sidecarRss = Object.entries(rssMiB).filter(([name]) => name.startsWith('sidecar') || name === 'attested-inbound');
  const targets: Target[] = [
    { name: `throughput c/b at ${high} connections`, value: rHigh.reqPerSec.cOverB, limit: '>= 0.9', pass: rHigh.reqPerSec.cOverB >= 0.9 },
    {
      name: `added p50 at ${low} connection(s), (c-a)/(b-a)`,
      value: addedRatio,
      limit: '<= 1.2',
      // A non-positive reference overhead is measurement noise: then only a sidecar that adds
      // nothing measurable either can pass.
      pass: rLow.addedP50Ms.reference > 0 ? addedRatio <= 1.2 : rLow.addedP50Ms.sidecar <= 0,
    },
    ...sidecarRss.map(([name, v]) => ({
      name: `RSS under load, ${name} (MiB)`,
      value: v.underLoad,
      limit: `<= ${RSS_LIMIT_MIB}`,
      pass: v.underLoad > 0 && v.underLoad <= RSS_LIMIT_MIB,
    })),
    {
      name: `attestation warm session / disabled, ${high} conns`,
      value: rHigh.attestation.sessionOverDisabled,
      limit: '>= 0.97',
      pass: rHigh.attestation.sessionOverDisabled >= 0.97,
    },
    ...verification
      .filter((v) => v.type.startsWith('sev-snp'))
      .map((v) => ({ name: 'SEV-SNP verify (cached chain) / bare P-384 verify', value: v.ratioToBareP384, limit: '<= 1.2', pass: v.ratioToBareP384 <= 1.2 })),
    { name: 'errors + non-2xx, all scenarios', value: errors + non2xx, limit: '= 0', pass: errors + non2xx === 0 },
  ];
  return { settings, machine, results, ratios, rssMiB, instances, rssPeak, verification, connectionCost, targets, errors, non2xx, ok: errors + non2xx === 0 };
}
