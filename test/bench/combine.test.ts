/**
 * combineWindows: one result for a scenario's runs within a round (run.ts runs every scenario
 * in order and back). Pure arithmetic over made-up runs; no load is generated here.
 */
import t from 'tap';
import { combineWindows, LatencySamples, type LoadResult } from '../../bench/load.js';

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
