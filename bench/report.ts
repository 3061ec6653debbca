/**
 * Turns per-round measurements into the benchmark report: medians over rounds, ratios between
 * scenarios, the issue's targets with PASS/FAIL, and a human-readable table.
 */
import type { LoadResult, RunCpu } from './load.js';
import { median } from './lib.js';
import type { ConnectionCost } from './connection-cost.js';
import type { VerifyCost } from './verify-cost.js';
import type { MemoryBreakdown } from './peak-memory.js';

/** In the order the report lists them. */
export const SCENARIOS = ['direct', 'reference', 'control', 'sidecar', 'attested', 'fresh'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/**
 * The order a round runs them in (rotated each round, then run back). The control (b') and the
 * sidecar pair (c) sit on either side of the bare pair (b), so b'/b and c/b compare runs the same
 * distance apart in time and b'/b shows the noise that c/b carries.
 */
export const RUN_ORDER: readonly Scenario[] = ['direct', 'control', 'reference', 'sidecar', 'attested', 'fresh'];

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
   * gauges how fast the VM ran then. Absent where CPU could not be read (not Linux).
   */
  cpu?: { cOverB: number; cOverBPerRound: number[]; controlOverB: number; controlOverBPerRound: number[] };
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
  settings: { rounds: number; durationSeconds: number; warmupSeconds: number; connections: number[]; quick: boolean };
  machine: { cpus: number; node: string; platform: string };
  results: ScenarioResult[];
  ratios: Ratios[];
  /** Per proxy process, MiB: VmRSS once ready (before any load) and the max sampled under load. */
  rssMiB: Record<string, { idle: number; underLoad: number }>;
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
 * other guests measured the hypervisor as much as the proxies (one such round read c/b 0.63,
 * another 1.22), so it is left out of that pair's median, provided at least half the rounds
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
  const cpuRatios = (x: ScenarioResult, y: ScenarioResult) => {
    const rounds = comparableRounds(x, y);
    if (!rounds.every((i) => gauged(x.rounds[i]!) !== undefined && gauged(y.rounds[i]!) !== undefined)) return undefined;
    return rounds.map((i) => gauged(x.rounds[i]!)! / gauged(y.rounds[i]!)!);
  };
  const cpuCOverB = cpuRatios(c, b);
  const cpuControlOverB = cpuRatios(bPrime, b);
  const p50 = (x: ScenarioResult, y: ScenarioResult) => pairedMedian(x, y, (xi, yi) => xi.p50Ms / yi.p50Ms);
  return {
    connections,
    attestation: { sessionOverDisabled: rps(d, c), perRequestOverSession: rps(e, d) },
    reqPerSec: { cOverA: rps(c, a), cOverB: rps(c, b) },
    cOverBPerRound: paired(c, b, (ci, bi) => ci.reqPerSec / bi.reqPerSec),
    cOverBStolenRounds: { left: measuredRounds(c, b) - comparableRounds(c, b).length, of: measuredRounds(c, b) },
    control: { overB: rps(bPrime, b), perRound: paired(bPrime, b, (xi, bi) => xi.reqPerSec / bi.reqPerSec) },
    ...(cpuCOverB?.length && cpuControlOverB?.length
      ? { cpu: { cOverB: median(cpuCOverB), cOverBPerRound: cpuCOverB, controlOverB: median(cpuControlOverB), controlOverBPerRound: cpuControlOverB } }
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
  // The pair under test (c) and the inbound sidecar that verifies the attested scenarios (d, e),
  // which until it got its own process was c's inbound and counted here. The attesting agents'
  // outbound sidecars are shown in the table but not held to it (README, "Benchmark").
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
  return { settings, machine, results, ratios, rssMiB, rssPeak, verification, connectionCost, targets, errors, non2xx, ok: errors + non2xx === 0 };
}

/** One line on the hypervisor's share of the CPU during the measured runs (Linux only). */
export function stealSummary(results: readonly ScenarioResult[]): string | undefined {
  const all = results.flatMap((r) => r.rounds.flatMap((x) => (x.steal !== undefined ? [x.steal] : [])));
  if (all.length === 0) return undefined;
  const high = all.filter((v) => v > HIGH_STEAL).length;
  const line = `VM steal during the measured runs (CPU time the hypervisor gave other guests): median ${fmt(median(all) * 100, 1)}%, max ${fmt(Math.max(...all) * 100, 1)}%`;
  if (high === 0) return line;
  return `${line}\n  WARNING: ${high} of ${all.length} scenario rounds lost over ${HIGH_STEAL * 100}% of the CPU to other guests; their req/s are not comparable. Ratios leave those rounds out while at least half the rounds remain (see "left out" above); rerun when the machine is quieter.`;
}

/** `121.4 = files 44.6 + anon 76.8 (V8 57.3: new 32.0, old 22.0, code 2.8; external 3.6)`, MiB. */
export function describePeak(b: MemoryBreakdown): string {
  const spaces = Object.entries(b.v8)
    .sort((x, y) => y[1] - x[1])
    .map(([space, mib]) => `${space} ${fmt(mib, 1)}`)
    .join(', ');
  const external = b.externalMiB !== undefined ? `; external ${fmt(b.externalMiB, 1)}` : '';
  return `${fmt(b.rssMiB, 1)} = files ${fmt(b.fileMiB, 1)} + anon ${fmt(b.anonMiB, 1)} (V8 ${fmt(b.v8TotalMiB, 1)}: ${spaces}${external})`;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** Wide enough for the longest scenario label. */
const LABEL_WIDTH = 32;

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

export function renderTable(r: BenchReport): string {
  const lines: string[] = [];
  const s = r.settings;
  lines.push(
    `attest-sidecar benchmark: ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${s.rounds} round(s), each scenario in order and back (2 x ~${s.durationSeconds} s, request counts), medians over rounds`,
    '',
    `${pad('scenario', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('req/s', 10, true)}${pad('p50 ms', 9, true)}${pad('p99 ms', 9, true)}${pad('errors', 8, true)}${pad('non2xx', 8, true)}${pad('steal %', 9, true)}`,
  );
  for (const res of r.results) {
    lines.push(
      `${pad(SCENARIO_LABEL[res.scenario], LABEL_WIDTH)}${pad(String(res.connections), 6, true)}${pad(fmt(res.reqPerSec, 0), 10, true)}` +
        `${pad(fmt(res.p50Ms, 3), 9, true)}${pad(fmt(res.p99Ms, 3), 9, true)}${pad(String(res.errors), 8, true)}${pad(String(res.non2xx), 8, true)}` +
        `${pad(res.steal !== undefined ? fmt(res.steal * 100, 1) : 'n/a', 9, true)}`,
    );
  }
  lines.push(
    '',
    `${pad('ratios', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('c/a rps', 10, true)}${pad('c/b rps', 10, true)}${pad('+p50 b', 9, true)}${pad('+p50 c', 9, true)}${pad('c/b per round', 16, true)}`,
  );
  for (const q of r.ratios) {
    const spread = q.cOverBPerRound.length ? `${fmt(Math.min(...q.cOverBPerRound))}-${fmt(Math.max(...q.cOverBPerRound))}` : 'n/a';
    lines.push(
      `${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.reqPerSec.cOverA), 10, true)}${pad(fmt(q.reqPerSec.cOverB), 10, true)}` +
        `${pad(fmt(q.addedP50Ms.reference, 3), 9, true)}${pad(fmt(q.addedP50Ms.sidecar, 3), 9, true)}${pad(spread, 16, true)}`,
    );
  }
  const left = r.ratios.filter((q) => q.cOverBStolenRounds.left > 0);
  for (const q of left) {
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}  left out: ${q.cOverBStolenRounds.left} of ${q.cOverBStolenRounds.of} rounds (over ${HIGH_STEAL * 100}% steal in b or c)`);
  }
  lines.push('', `${pad('A/A control', LABEL_WIDTH)}${pad('conns', 6, true)}${pad("b'/b rps", 10, true)}${pad("b'/b per round", 16, true)}   (two identical bare pairs: the noise in a ratio of pairs)`);
  for (const q of r.ratios) {
    const spread = q.control.perRound.length ? `${fmt(Math.min(...q.control.perRound))}-${fmt(Math.max(...q.control.perRound))}` : 'n/a';
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.control.overB), 10, true)}${pad(spread, 16, true)}`);
  }
  if (r.ratios.some((q) => q.cpu)) {
    lines.push(
      '',
      `${pad('CPU per request', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('b us', 8, true)}${pad("b' us", 8, true)}${pad('c us', 8, true)}${pad('c/b', 7, true)}${pad("b'/b", 7, true)}${pad('c/b per round', 16, true)}`,
    );
    for (const q of r.ratios) {
      if (!q.cpu) continue;
      const us = (sc: Scenario) => r.results.find((x) => x.scenario === sc && x.connections === q.connections)?.cpuUsPerRequest?.proxies;
      const opt = (v: number | undefined) => (v === undefined ? 'n/a' : fmt(v, 1));
      lines.push(
        `${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(opt(us('reference')), 8, true)}${pad(opt(us('control')), 8, true)}${pad(opt(us('sidecar')), 8, true)}` +
          `${pad(fmt(q.cpu.cOverB), 7, true)}${pad(fmt(q.cpu.controlOverB), 7, true)}${pad(`${fmt(Math.min(...q.cpu.cOverBPerRound))}-${fmt(Math.max(...q.cpu.cOverBPerRound))}`, 16, true)}`,
      );
    }
    lines.push(`${pad('', LABEL_WIDTH)}(the pair's two proxies, all threads; the ratios divide each run's by the load generator's CPU per request in that run)`);
    for (const q of r.ratios) {
      const others = r.results.filter((x) => x.connections === q.connections && x.backgroundMsPerSecond !== undefined);
      if (others.length === 0) continue;
      lines.push(
        `${pad('', LABEL_WIDTH)}@${q.connections}: other scenarios' proxies used, during each one's runs (ms of CPU per s): ` +
          others.map((x) => `${SCENARIO_LETTER[x.scenario]} ${fmt(x.backgroundMsPerSecond!, 0)}`).join(', '),
      );
    }
  }
  lines.push('', `${pad('attestation', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('d/c rps', 10, true)}${pad('e/d rps', 10, true)}   (d/c: warm session vs off; e/d: per_request vs session)`);
  for (const q of r.ratios) {
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.attestation.sessionOverDisabled), 10, true)}${pad(fmt(q.attestation.perRequestOverSession), 10, true)}`);
  }
  lines.push('', `${pad('RSS (MiB)', LABEL_WIDTH)}${pad('at start', 10, true)}${pad('under load', 12, true)}`);
  for (const [name, v] of Object.entries(r.rssMiB)) {
    lines.push(`${pad(name, LABEL_WIDTH)}${pad(fmt(v.idle, 1), 10, true)}${pad(fmt(v.underLoad, 1), 12, true)}`);
  }
  const peaks = Object.entries(r.rssPeak ?? {});
  if (peaks.length) {
    lines.push('', 'at the highest RSS explained: resident file pages + anonymous memory (V8 heap spaces, committed; external)');
    for (const [name, b] of peaks) lines.push(`  ${pad(name, 26)}${describePeak(b)}`);
  }
  if (r.verification.length) {
    lines.push('', `${pad('verification (in process)', 40)}${pad('median us', 11, true)}${pad('x P-384', 9, true)}  source`);
    for (const v of r.verification) lines.push(`${pad(v.type, 40)}${pad(fmt(v.medianUs, 1), 11, true)}${pad(fmt(v.ratioToBareP384), 9, true)}  ${v.source}`);
  }
  if (r.connectionCost.length) {
    lines.push('', `${pad('new mTLS connection + 1 request', 40)}${pad('median ms', 11, true)}${pad('resumed', 12, true)}`);
    for (const c of r.connectionCost) {
      const name = `${c.listener} inbound, ${c.sessionOffered ? 'session offered' : 'full handshake'}`;
      lines.push(`${pad(name, 40)}${pad(fmt(c.medianMs, 3), 11, true)}${pad(`${c.resumed}/${c.connections}`, 12, true)}`);
    }
  }
  const steal = stealSummary(r.results);
  if (steal) lines.push('', steal);
  lines.push('', 'targets');
  for (const t of r.targets) {
    lines.push(`  ${t.pass ? 'PASS' : 'FAIL'}  ${pad(t.name, 48)} ${pad(fmt(t.value), 8, true)}  (${t.limit})`);
  }
  for (const res of r.results) {
    if (res.firstError) lines.push(`  first error in ${res.scenario} @${res.connections}: ${res.firstError}`);
  }
  return lines.join('\n') + '\n';
}
