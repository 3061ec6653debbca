/**
 * timeInterleavedUs: the verifiers take turns in short blocks, so their ratios compare timings
 * taken side by side. Checks the call pattern only; no timing is asserted.
 */
import t from 'tap';
import { timeInterleavedUs } from '../../bench/verify-cost.js';

t.test('every function runs its warm-up, then all take turns in blocks until each has its iterations', async (t) => {
  const calls: number[] = [];
  const fns = [0, 1, 2].map((k) => () => calls.push(k));
  const medians = timeInterleavedUs(fns, 120);
  t.equal(medians.length, 3);
  t.ok(medians.every((m) => Number.isFinite(m) && m >= 0), 'a median per function');
  const warm = calls.splice(0, 150);
  t.same(warm, [...Array(50).fill(0), ...Array(50).fill(1), ...Array(50).fill(2)], '50 warm-up calls each');
  t.equal(calls.length, 360, '120 timed calls each');
  for (const k of [0, 1, 2]) t.equal(calls.filter((c) => c === k).length, 120);
  // Turns: runs of one function are at most 25 long, and the functions alternate 0, 1, 2, 0, ...
  const runs: { k: number; n: number }[] = [];
  for (const c of calls) {
    const last = runs[runs.length - 1];
    if (last && last.k === c) last.n++;
    else runs.push({ k: c, n: 1 });
  }
  t.ok(runs.every((r) => r.n <= 25), 'no block longer than 25 calls');
  t.same(runs.map((r) => r.k), runs.map((_, i) => i % 3), 'the functions take turns');
  t.same(runs.slice(-3).map((r) => r.n), [20, 20, 20], 'the last turn is the remainder (120 = 4 x 25 + 20)');
});
