/**
 * A journal write that fails (here: EFBIG under a real RLIMIT_FSIZE in a child process) fails the
 * store closed: the affected charges reject, later ones too, and reopening shows the acknowledged
 * charges (plus at most the complete records of the failed write), with the torn tail dropped.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FileBudgetStore } from '../../src/budget/file-store.js';
import { childEnv, tempDir } from './helpers.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'write-fail-child.js');

t.test('a failed journal write fails the store closed and loses no acknowledged charge', async (t) => {
  const dir = path.join(tempDir(t), 'ledger');
  // bash's ulimit -f counts 1024-byte blocks: about 80 journal records fit. NODE_OPTIONS is
  // unset there because tap re-injects its hook into every child, and the hook's signal-exit
  // handler turns SIGXFSZ (which Node itself ignores) into a kill.
  const script = 'ulimit -f 4 && unset NODE_OPTIONS && exec "$0" "$1" "$2"';
  const res = spawnSync('bash', ['-c', script, process.execPath, CHILD, dir], {
    encoding: 'utf8',
    timeout: 20_000,
    env: childEnv(),
  });
  t.equal(res.status, 0, `child exited cleanly (${res.signal ?? res.error?.message ?? 'ok'}): ${res.stderr}`);
  const seen = JSON.parse(res.stdout) as {
    acked: number;
    rejected: number;
    reason: string;
    later: string;
    laterAdjust: string;
    peek: number;
    failed: boolean;
  };
  t.equal(seen.reason, 'budget_ledger_failed', 'the failed batch rejected with budget_ledger_failed');
  t.ok(seen.acked > 10 && seen.acked < 4096 / 20, `some charges were acknowledged first (${seen.acked})`);
  t.equal(seen.later, 'budget_ledger_failed', 'later charges are refused (fail closed)');
  t.equal(seen.laterAdjust, 'budget_ledger_failed');
  t.ok(seen.failed);
  t.equal(seen.peek, seen.acked + seen.rejected, 'in-memory increments of failed charges stay (conservative)');

  const s = await FileBudgetStore.open(dir);
  const total = s.peek('a:total') ?? 0;
  t.ok(total >= seen.acked, `durable ${total} >= acknowledged ${seen.acked}`);
  t.ok(total <= seen.acked + seen.rejected, `durable ${total} <= acknowledged + failed batch`);
  t.comment(`torn bytes dropped on reopen: ${s.repairedBytes}`);
  await s.charge('a:total', 1, 1_000_000);
  await s.close();
});
