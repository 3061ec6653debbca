/**
 * The report's paired ratios over made-up rounds: rounds that lost the CPU to other guests are
 * left out of a pair's median while enough rounds remain, and both sides go together.
 */
import t from 'tap';
import type { LoadResult } from '../../bench/load.js';
import { BALANCED_ROUNDS, buildReport, comparableRounds, roundOrder, RUN_ORDER, summarize, SCENARIOS, type Scenario } from '../../bench/report.js';
import { renderTable } from '../../bench/table.js';

function round(reqPerSec: number, steal?: number): LoadResult {
  return { requests: reqPerSec, elapsedSeconds: 1, reqPerSec, p50Ms: 1, p99Ms: 2, errors: 0, non2xx: 0, maxRss: {}, ...(steal !== undefined ? { steal } : {}) };
}

/** Seven rounds of every scenario at 32 connections: b and b' 1000 req/s, c 950 (c/b 0.95), unless overridden. */
function results(over: Partial<Record<Scenario, LoadResult[]>>) {
  const base: Record<Scenario, number> = { direct: 5000, reference: 1000, control: 1000, sidecar: 950, attested: 940, fresh: 300 };
  return SCENARIOS.map((s) => summarize(s, 32, over[s] ?? Array.from({ length: 7 }, () => round(base[s]))));
}

function report(over: Partial<Record<Scenario, LoadResult[]>>) {
  return buildReport(
    { rounds: 7, durationSeconds: 2, warmupSeconds: 1, settleSeconds: 0.5, connections: [32], quick: false },
    { cpus: 2, node: '20', platform: 'linux-x64' },
    results(over),
    {},
    {},
  );
}

t.test('quiet rounds: every round counts', async (t) => {
  const r = report({});
  t.equal(r.ratios[0]!.reqPerSec.cOverB, 0.95);
  t.same(r.ratios[0]!.cOverBStolenRounds, { left: 0, of: 7 });
  t.notMatch(renderTable(r), /left out/);
  t.match(renderTable(r), /7 round\(s\), each scenario forwards and back \(2 x ~2 s, request counts, each after ~0\.5 s uncounted\)/, 'the header says measured runs are settled');
  t.notMatch(renderTable(r), /balanced/, 'seven rounds are not a whole number of balanced squares: not called balanced');
  t.match(renderTable(buildReport({ ...r.settings, rounds: 12 }, r.machine, r.results, {}, {})), /12 round\(s\) in balanced orders, each scenario/, 'twelve are');
  const unsettled = buildReport({ ...r.settings, settleSeconds: 0 }, r.machine, r.results, {}, {});
  t.match(renderTable(unsettled), /\(2 x ~2 s, request counts\), medians/, 'no settle runs: not mentioned');
});

t.test('rounds with over 10% steal in b or in c are left out of c/b, both sides together', async (t) => {
  // Rounds 0-2 are stolen (in b, in c, in both) and read 0.5, 0.6 and 2.0; the four quiet ones 0.95.
  const sidecar = [round(500), round(600, 0.3), round(2000, 0.2), round(950), round(950), round(950, 0.1), round(950)];
  const reference = [round(1000, 0.5), round(1000), round(1000, 0.2), round(1000), round(1000), round(1000), round(1000)];
  const r = report({ sidecar, reference });
  const q = r.ratios[0]!;
  t.equal(q.reqPerSec.cOverB, 0.95, 'median of the quiet rounds (exactly 10% is not over it)');
  t.same(q.cOverBPerRound, [0.95, 0.95, 0.95, 0.95]);
  t.same(q.cOverBStolenRounds, { left: 3, of: 7 });
  const c = r.results.find((x) => x.scenario === 'sidecar')!;
  const b = r.results.find((x) => x.scenario === 'reference')!;
  t.same(comparableRounds(c, b), [3, 4, 5, 6]);
  t.match(renderTable(r), /left out: 3 of 7 rounds \(over 10% steal in b or c\)/);
  t.match(renderTable(r), /PASS {2}throughput c\/b at 32 connections/);
});

t.test('with fewer than half the rounds quiet, every round counts (and the warning says why)', async (t) => {
  const stolen = (v: number) => round(v, 0.4);
  const sidecar = [stolen(500), stolen(600), stolen(700), stolen(800), round(950, 0), round(950, 0), round(950, 0)];
  const r = report({ sidecar });
  t.equal(r.ratios[0]!.reqPerSec.cOverB, 0.8, 'median of all seven');
  t.same(r.ratios[0]!.cOverBStolenRounds, { left: 0, of: 7 });
  t.match(renderTable(r), /WARNING: 4 of 7 scenario rounds lost over 10%/);
});

t.test('steal unknown (not Linux) counts as quiet', async (t) => {
  const r = report({ sidecar: Array.from({ length: 7 }, (_, i) => round(900 + i * 10)) });
  t.equal(r.ratios[0]!.reqPerSec.cOverB, 0.93);
  t.same(r.ratios[0]!.cOverBStolenRounds, { left: 0, of: 7 });
});

t.test('other pairs drop their own stolen rounds: d/c ignores steal in b', async (t) => {
  const reference = [round(1000, 0.5), round(1000, 0.5), round(1000, 0.5), round(1000), round(1000), round(1000), round(1000)];
  const attested = [round(100), round(100), round(100), round(940), round(940), round(940), round(940)];
  const r = report({ reference, attested });
  t.equal(r.ratios[0]!.attestation.sessionOverDisabled, 940 / 950, 'c and d were quiet in every round: all seven count');
  t.equal(r.ratios[0]!.reqPerSec.cOverB, 0.95);
});

t.test("the A/A control: b'/b per round and its median, stolen rounds left out as for c/b", async (t) => {
  // b' reads 0.90-1.10 of b in the quiet rounds; round 0 lost 40% to steal in b' and read 0.5.
  const control = [round(500, 0.4), round(900), round(1100), round(950), round(1050), round(1000), round(980)];
  const r = report({ control });
  const q = r.ratios[0]!;
  t.same(q.control.perRound, [0.9, 1.1, 0.95, 1.05, 1, 0.98]);
  t.equal(q.control.overB, 0.99, 'median of the six quiet rounds');
  t.equal(q.reqPerSec.cOverB, 0.95, 'c/b does not depend on the control');
  t.match(renderTable(r), /A\/A control[^\n]*\n +32 +0\.99 +0\.90-1\.10\n/);
  t.notOk(r.targets.some((x) => /b'/.test(x.name)), 'the control is shown, not a target');
});

t.test('CPU per request: paired per round and gauged by the load generator, b\'/b alike', async (t) => {
  // Per response: b's proxies 100 us and the load generator 25 us; c's proxies 110 us. In four
  // rounds of seven the VM ran 1.5x slower during c's runs: every process's CPU per response grew alike.
  const cpuRound = (proxiesUs: number, loadgenUs: number, steal?: number): LoadResult => ({
    ...round(1000, steal),
    cpu: { proxiesNs: proxiesUs * 1000 * 1000, loadgenNs: loadgenUs * 1000 * 1000, responses: 1000 },
  });
  const slow = (i: number) => ([1, 2, 4, 5].includes(i) ? 1.5 : 1);
  const reference = Array.from({ length: 7 }, () => cpuRound(100, 25));
  const control = Array.from({ length: 7 }, (_, i) => cpuRound(i === 3 ? 104 : 100, 25));
  const sidecar = Array.from({ length: 7 }, (_, i) => cpuRound(110 * slow(i), 25 * slow(i)));
  const r = report({ reference, control, sidecar });
  const q = r.ratios[0]!;
  t.ok(q.cpu, 'CPU ratios present when every round has CPU');
  t.equal(q.cpu!.cOverB.toFixed(6), '1.100000', 'the slow rounds read like the others once gauged');
  t.same(q.cpu!.cOverBPerRound.map((v) => v.toFixed(3)), Array(7).fill('1.100'));
  t.equal(q.cpu!.controlOverB, 1, 'A/A: median 1');
  t.equal(Math.max(...q.cpu!.controlOverBPerRound).toFixed(2), '1.04');
  const c = r.results.find((x) => x.scenario === 'sidecar')!;
  t.same(c.cpuUsPerRequest, { proxies: 165, loadgen: 37.5 }, 'raw medians over rounds, us per request');
  // Raw, c's slow rounds read 165 us against b's 100: four of seven, so the raw median is 1.65.
  t.equal(q.cpu!.raw.cOverB.toFixed(6), '1.650000', 'raw ratios as measured, paired per round');
  t.equal(q.cpu!.raw.controlOverB, 1);
  t.match(renderTable(r), /CPU per request[^\n]*\n +32 +100\.0 +100\.0 +165\.0 +1\.10 +1\.00 +1\.10-1\.10 +1\.65 +1\.00\n/);
  t.notMatch(renderTable(r), /other scenarios' proxies used/, 'no background readings: no line');
  // The other proxies used 30 ms of CPU per s of b's runs and 90 of c's (a neighbour's leftovers).
  const withOthers = (runs: LoadResult[], ms: number) => runs.map((x) => ({ ...x, cpu: { ...x.cpu!, backgroundNs: ms * 1e6, wallNs: 1e9 } }));
  const r2 = report({ reference: withOthers(reference, 30), control: withOthers(control, 20), sidecar: withOthers(sidecar, 90) });
  t.equal(r2.results.find((x) => x.scenario === 'sidecar')!.backgroundMsPerSecond, 90);
  t.match(renderTable(r2), /@32: other scenarios' proxies used, during each one's runs \(ms of CPU per s\): b 30, b' 20, c 90\n/);
});

t.test('CPU ratios are left out when a round has no CPU reading', async (t) => {
  const reference = Array.from({ length: 7 }, (_, i) => ({ ...round(1000), ...(i === 2 ? {} : { cpu: { proxiesNs: 1e8, loadgenNs: 2.5e7, responses: 1000 } }) }));
  const control = Array.from({ length: 7 }, () => ({ ...round(1000), cpu: { proxiesNs: 1e8, loadgenNs: 2.5e7, responses: 1000 } }));
  const sidecar = Array.from({ length: 7 }, () => ({ ...round(950), cpu: { proxiesNs: 1.1e8, loadgenNs: 2.5e7, responses: 1000 } }));
  const r = report({ reference, control, sidecar });
  t.equal(r.ratios[0]!.cpu, undefined);
  t.notMatch(renderTable(r), /CPU per request/);
  t.equal(r.ratios[0]!.reqPerSec.cOverB, 0.95, 'req/s ratios unaffected');
});

t.test('run orders: over six rounds every scenario follows every other once each way, in every position once', async (t) => {
  t.equal(BALANCED_ROUNDS, RUN_ORDER.length);
  const follows = new Map<string, number>();
  const positions = new Map<string, Set<number>>();
  for (let round = 0; round < BALANCED_ROUNDS; round++) {
    const order = roundOrder(round);
    t.same([...order].sort(), [...RUN_ORDER].sort(), `round ${round} runs every scenario once`);
    order.forEach((s, i) => (positions.get(s) ?? positions.set(s, new Set()).get(s)!).add(i));
    const runs = [...order, ...[...order].reverse()];
    for (let i = 1; i < runs.length; i++) {
      if (runs[i] === runs[i - 1]) continue; // the turn: a scenario's own two runs
      const key = `${runs[i - 1]}>${runs[i]}`;
      follows.set(key, (follows.get(key) ?? 0) + 1);
    }
  }
  const n = RUN_ORDER.length;
  t.equal(follows.size, n * (n - 1), 'every ordered pair of scenarios occurs');
  t.same([...new Set(follows.values())], [2], 'each exactly twice: once forwards, once coming back');
  for (const [s, p] of positions) t.equal(p.size, n, `${s} runs in every position`);
  t.same(roundOrder(BALANCED_ROUNDS), roundOrder(0), 'a seventh round starts the square again');
});
