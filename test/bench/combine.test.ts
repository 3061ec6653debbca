/**
 * combineWindows: one result for a scenario's runs within a round (run.ts runs every scenario
 * in order and back). Pure arithmetic over made-up runs; no load is generated here.
 */
import t from 'tap';
import { combineWindows, LatencySamples, type LoadResult } from '../../bench/load.js';
import { parseCpuTimes, processCpuNs, stealBetween } from '../../bench/lib.js';
import { stealSummary } from '../../bench/table.js';

function run(requests: number, elapsedSeconds: number, extra: Partial<LoadResult> = {}): LoadResult {
  return { requests, elapsedSeconds, reqPerSec: requests / elapsedSeconds, p50Ms: NaN, p99Ms: NaN, errors: 0, non2xx: 0, maxRss: {}, ...extra };
}

t.test('req/s is the rate over both runs, not the mean of their rates', async (t) => {
  // 1000 requests in 1 s, then 1000 in 4 s: 2000 in 5 s is 400 req/s (the mean of rates would say 625).
  const r = combineWindows([run(1000, 1), run(1000, 4)], new LatencySamples());
  t.equal(r.requests, 2000);
  t.equal(r.elapsedSeconds, 5);
  t.equal(r.reqPerSec, 400);
});

t.test('percentiles come from every latency of the runs together', async (t) => {
  const lat = new LatencySamples();
  // First run fast (1 ms x 50), second slow (10 ms x 50): the p50 of both lies in the fast half,
  // the p99 in the slow one; neither run's own percentile is both.
  for (let i = 0; i < 50; i++) lat.push(1);
  for (let i = 0; i < 50; i++) lat.push(10);
  const r = combineWindows([run(50, 1, { p50Ms: 1, p99Ms: 1 }), run(50, 1, { p50Ms: 10, p99Ms: 10 })], lat);
  t.equal(r.p50Ms, 1);
  t.equal(r.p99Ms, 10);
});

t.test('errors and non-2xx add up, the first error is kept, RSS is the maximum', async (t) => {
  const r = combineWindows(
    [
      run(10, 1, { errors: 1, non2xx: 2, firstError: 'HTTP 503', maxRss: { a: 5, b: 9 } }),
      run(10, 1, { errors: 3, firstError: 'ECONNRESET', maxRss: { a: 7 } }),
    ],
    new LatencySamples(),
  );
  t.equal(r.errors, 4);
  t.equal(r.non2xx, 2);
  t.equal(r.firstError, 'HTTP 503');
  t.same(r.maxRss, { a: 7, b: 9 });
});

t.test('a run without errors keeps firstError absent; no runs is a programming error', async (t) => {
  const r = combineWindows([run(10, 1)], new LatencySamples());
  t.notOk('firstError' in r);
  t.throws(() => combineWindows([], new LatencySamples()), /no runs to combine/);
});

t.test('a window with no samples reports NaN percentiles, not a number from nowhere', async (t) => {
  const r = combineWindows([run(0, 0)], new LatencySamples());
  t.equal(r.reqPerSec, 0);
  t.ok(Number.isNaN(r.p50Ms) && Number.isNaN(r.p99Ms));
});

t.test('steal is weighted by run length, and absent when no run knew it', async (t) => {
  // 10% over 1 s and 40% over 3 s: 1.3 s of 4 s, 32.5%.
  const r = combineWindows([run(10, 1, { steal: 0.1 }), run(30, 3, { steal: 0.4 })], new LatencySamples());
  t.ok(Math.abs(r.steal! - 0.325) < 1e-12, `steal ${r.steal}`);
  t.equal(combineWindows([run(10, 1, { steal: 0.2 }), run(10, 1)], new LatencySamples()).steal, 0.2, 'a run without it does not count as zero');
  t.notOk('steal' in combineWindows([run(10, 1)], new LatencySamples()));
});

t.test('/proc/stat: steal and total from the aggregate cpu line', async (t) => {
  const stat = 'cpu  100 5 50 800 10 0 5 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\nintr 1 2 3\n';
  t.same(parseCpuTimes(stat), { steal: 30, total: 1000 }, 'guest (already in user) is not added again');
  t.equal(parseCpuTimes('cpu0 1 2 3 4 5 6 7 8\n'), undefined, 'no aggregate line');
  t.equal(parseCpuTimes('cpu  1 2 3\n'), undefined, 'too few fields (no steal column)');
  t.equal(stealBetween({ steal: 30, total: 1000 }, { steal: 80, total: 1200 }), 0.25);
  t.equal(stealBetween({ steal: 30, total: 1000 }, { steal: 30, total: 1000 }), undefined, 'no time passed');
  t.equal(stealBetween(undefined, { steal: 1, total: 2 }), undefined);
});

t.test('the steal line of the report, with a warning when the hypervisor took a lot', async (t) => {
  const result = (steals: (number | undefined)[]) => ({
    scenario: 'reference' as const, connections: 32, reqPerSec: 1, p50Ms: 1, p99Ms: 1, requests: 1, errors: 0, non2xx: 0,
    rounds: steals.map((s) => ({ reqPerSec: 1, p50Ms: 1, p99Ms: 1, ...(s !== undefined ? { steal: s } : {}) })),
  });
  t.equal(stealSummary([result([undefined])]), undefined, 'unknown (not Linux): no line');
  const calm = stealSummary([result([0.02, 0.04]), result([0.03])])!;
  t.match(calm, /median 3\.0%, max 4\.0%/);
  t.notMatch(calm, /WARNING/);
  t.match(stealSummary([result([0.3, 0.5, 0.02])])!, /median 30\.0%, max 50\.0%\n.*WARNING: 2 of 3 scenario rounds/);
  t.match(stealSummary([result([0.01, 0.02, 0.5])])!, /median 2\.0%.*\n.*WARNING: 1 of 3/, 'one bad round is enough to warn, whatever the median');
});

t.test('CPU adds up over the runs, and only when every run has it', async (t) => {
  const cpu = (proxiesNs: number, loadgenNs: number, responses: number) => ({ cpu: { proxiesNs, loadgenNs, responses } });
  const both = combineWindows([run(900, 1, cpu(1e8, 2e7, 1000)), run(1800, 2, cpu(3e8, 5e7, 2000))], new LatencySamples());
  t.same(both.cpu, { proxiesNs: 4e8, loadgenNs: 7e7, responses: 3000 });
  const withOthers = (backgroundNs: number, wallNs: number) => ({ cpu: { proxiesNs: 1e8, loadgenNs: 2e7, responses: 1000, backgroundNs, wallNs } });
  t.same(combineWindows([run(900, 1, withOthers(5e6, 1e9)), run(900, 1, withOthers(1.5e7, 1e9))], new LatencySamples()).cpu, {
    proxiesNs: 2e8, loadgenNs: 4e7, responses: 2000, backgroundNs: 2e7, wallNs: 2e9,
  }, 'the other proxies\' CPU and the runs\' time add up too');
  t.notOk('backgroundNs' in combineWindows([run(900, 1, withOthers(5e6, 1e9)), run(900, 1, cpu(1e8, 2e7, 1000))], new LatencySamples()).cpu!, 'but only when every run has them');
  const partial = combineWindows([run(900, 1, cpu(1e8, 2e7, 1000)), run(1800, 2)], new LatencySamples());
  t.equal(partial.cpu, undefined, 'one run without a reading: no sum of part of the runs');
});

t.test('processCpuNs: a process\'s CPU time in ns, all threads; undefined for no such process', { skip: process.platform !== 'linux' && 'reads /proc (Linux only)' }, async (t) => {
  const before = processCpuNs('self')!;
  // Spin for 20 ms of CPU time as getrusage counts it (wall time would include what a busy VM steals).
  const start = process.cpuUsage();
  for (let u = process.cpuUsage(start); u.user + u.system < 20_000; u = process.cpuUsage(start));
  const after = processCpuNs('self')!;
  t.ok(after - before >= 15e6, `at least 15 ms counted for 20 ms of spinning (${((after - before) / 1e6).toFixed(1)} ms)`);
  t.equal(processCpuNs(2 ** 22 + 1), undefined, 'a pid above pid_max');
});
