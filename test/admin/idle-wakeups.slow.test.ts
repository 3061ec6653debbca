/**
 * An idle sidecar should cost next to nothing: one per pod runs beside every agent. Counts the
 * times its threads block and wake (voluntary context switches, from /proc) while it serves
 * nothing. Before, the event-loop delay histogram (prom-client's 10 ms default) and the audit
 * sink's 100 ms interval woke it 104-115 times a second (~1% of a core); now ~24.
 * Counts, not timings, so a loaded machine does not change the answer. Linux only.
 */
import t from 'tap';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { killAll, sidecarArgs, spawnNode, stopChild, waitForOk } from '../../bench/lib.js';
import { writeBenchFiles } from '../../bench/setup.js';
import { repoRoot } from '../helpers/paths.js';

function voluntarySwitches(pid: number): number {
  let n = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'));
      if (m) n += Number(m[1]);
    } catch {
      // the thread ended between listing and reading
    }
  }
  return n;
}

t.test('an idle sidecar wakes fewer than 60 times a second', { skip: process.platform === 'linux' ? false : 'reads /proc (Linux only)' }, async (t) => {
  const f = await writeBenchFiles();
  const sidecar = spawnNode('idle-sidecar', sidecarArgs(repoRoot, 'run', '--config', f.serviceConfig), repoRoot);
  t.teardown(async () => {
    await stopChild(sidecar);
    killAll();
    rmSync(f.dir, { recursive: true, force: true });
  });
  await waitForOk([sidecar], `http://127.0.0.1:${f.ports.serviceAdmin}/readyz`);
  await sleep(2000); // past the start-up work (first collections, compilation)
  const before = voluntarySwitches(sidecar.pid);
  const seconds = 4;
  await sleep(seconds * 1000);
  const perSecond = (voluntarySwitches(sidecar.pid) - before) / seconds;
  t.ok(perSecond < 60, `idle wakeups: ${perSecond.toFixed(0)}/s (all threads)`);
});
