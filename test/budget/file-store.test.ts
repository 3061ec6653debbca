import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import t from 'tap';
import { SidecarError } from '../../src/errors.js';
import { FileBudgetStore } from '../../src/budget/file-store.js';
import { capturingLogger, journalFiles, sumTotals, tempDir } from './helpers.js';

const BIG = Number.MAX_SAFE_INTEGER;

async function reopenTotals(dir: string): Promise<Map<string, number>> {
  const s = await FileBudgetStore.open(dir);
  const totals = new Map(s.entries());
  await s.close();
  return totals;
}

t.test('round trip: charges and adjustments survive close and reopen; files are private', async (t) => {
  const dir = path.join(tempDir(t), 'ledger');
  const s = await FileBudgetStore.open(dir);
  t.same(await s.charge('a:total', 1_500_000, 25_000_000), { ok: true, spentMicros: 1_500_000 });
  t.same(await s.charge('a:total', 250_000, 25_000_000), { ok: true, spentMicros: 1_750_000 });
  t.same(await s.charge('b:2026-11-22', 10, 100), { ok: true, spentMicros: 10 });
  t.same(await s.adjust('a:total', -750_000), { spentMicros: 1_000_000 }, 'negative adjustment (refund of an estimate)');
  t.same(await s.adjust('c:total', 42), { spentMicros: 42 }, 'adjusting an unseen key creates it');
  t.equal(s.peek('a:total'), 1_000_000);
  t.equal(s.peek('nobody:total'), undefined);
  await s.close();
  await s.close(); // idempotent

  t.equal(statSync(dir).mode & 0o777, 0o700);
  for (const f of ['ledger.snapshot', 'ledger.0.journal']) t.equal(statSync(path.join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`);
  t.notOk(existsSync(path.join(dir, 'ledger.lock')), 'close released the lock');

  const lines = readFileSync(path.join(dir, 'ledger.0.journal'), 'utf8').split('\n');
  t.equal(lines.pop(), '', 'journal ends with a newline');
  t.equal(lines.length, 5, 'one record per charge/adjustment');
  const [json, sum] = lines[0]!.split('\t');
  t.match(JSON.parse(json!), { k: 'a:total', d: 1_500_000 });
  t.equal(sum, crc32(Buffer.from(json!)).toString(16).padStart(8, '0'), 'checksum is the CRC-32 of the JSON');

  t.same(Object.fromEntries(await reopenTotals(dir)), { 'a:total': 1_000_000, 'b:2026-11-22': 10, 'c:total': 42 });
});

t.test('refused charges and zero amounts write nothing; closed store refuses', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir);
  t.same(await s.charge('a:total', 0, 10), { ok: true, spentMicros: 0 }, 'a zero charge under the limit is admitted');
  t.same(await s.charge('a:total', 10, 10), { ok: true, spentMicros: 10 });
  t.same(await s.charge('a:total', 5, 10), { ok: false, spentMicros: 10 }, 'spent >= limit refuses');
  t.same(await s.charge('a:total', 0, 10), { ok: false, spentMicros: 10 }, 'an exhausted budget refuses even zero');
  t.same(await s.charge('b:total', 1, 0), { ok: false, spentMicros: 0 }, 'limit 0 refuses everything');
  await t.rejects(s.charge('a:total', -1, 10), { name: 'SidecarError', reason: 'budget_invalid_argument' });
  await t.rejects(s.charge('a:total', 0.5, 10), { name: 'SidecarError', reason: 'budget_invalid_argument' });
  await t.rejects(s.charge('', 1, 10), { name: 'SidecarError', reason: 'budget_invalid_argument' });
  await t.rejects(s.adjust('a:total', BIG), { name: 'SidecarError', reason: 'budget_invalid_argument' }, 'overflow is refused, not wrapped');
  t.equal(readFileSync(path.join(dir, 'ledger.0.journal'), 'utf8').split('\n').length - 1, 1, 'only the admitted charge was journaled');
  await s.close();
  await t.rejects(s.charge('a:total', 1, 100), { name: 'SidecarError', reason: 'budget_store_unavailable' });
});

t.test('concurrency: 1000 concurrent charges never overshoot by more than one amount', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir);
  const ones = await Promise.all(Array.from({ length: 1000 }, () => s.charge('ones:total', 1, 100)));
  t.equal(ones.filter((r) => r.ok).length, 100, 'exactly 100 of 1000 admitted');
  t.equal(s.peek('ones:total'), 100);
  const sevens = await Promise.all(Array.from({ length: 1000 }, () => s.charge('sevens:total', 7, 100)));
  t.equal(sevens.filter((r) => r.ok).length, 15, 'admitted while spent < 100: 0,7,...,98');
  t.equal(s.peek('sevens:total'), 105, 'spent <= limit + one amount');
  t.ok(Math.max(...sevens.map((r) => r.spentMicros)) <= 107);
  await s.close();
  t.same(Object.fromEntries(await reopenTotals(dir)), { 'ones:total': 100, 'sevens:total': 105 }, 'all admitted charges are durable');
});

t.test('compaction: snapshot + new journal, old journal gone, totals equal after reopen', async (t) => {
  const dir = tempDir(t);
  const logger = capturingLogger();
  const s = await FileBudgetStore.open(dir, { compactEvery: 10, logger });
  const expected = new Map<string, number>();
  for (let i = 0; i < 57; i++) {
    const key = `k${i % 4}:total`;
    await s.charge(key, i + 1, BIG);
    expected.set(key, (expected.get(key) ?? 0) + i + 1);
  }
  // Concurrent bursts: compaction runs while more charges queue up.
  const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => s.charge(`k${i % 4}:total`, 1, BIG)));
  for (let i = 0; i < burst.length; i++) expected.set(`k${i % 4}:total`, expected.get(`k${i % 4}:total`)! + 1);
  await s.adjust('k0:total', -3);
  expected.set('k0:total', expected.get('k0:total')! - 3);
  const stats = s.stats();
  t.ok(stats.compactions >= 3, `compacted ${stats.compactions} times`);
  t.equal(stats.generation, stats.compactions);
  t.same(Object.fromEntries(s.entries()), Object.fromEntries(expected));
  await s.close();

  t.same(journalFiles(dir), [`ledger.${stats.generation}.journal`], 'only the current journal remains');
  const snap = JSON.parse(readFileSync(path.join(dir, 'ledger.snapshot'), 'utf8')) as { version: number; journal: number };
  t.equal(snap.version, 1);
  t.equal(snap.journal, stats.generation, 'the snapshot names the current journal');
  t.same(Object.fromEntries(await reopenTotals(dir)), Object.fromEntries(expected), 'no charge lost or double counted');
  t.ok(logger.lines.some((l) => l.msg === 'budget ledger compacted'));
});

t.test('compaction forgets daily/monthly counters past their retention', async (t) => {
  const dir = tempDir(t);
  let now = Date.parse('2026-01-10T12:00:00Z');
  const s = await FileBudgetStore.open(dir, { compactEvery: 3, now: () => now });
  await s.charge('a:2026-01-10', 5, 100);
  await s.charge('a:2026-01', 5, 100);
  await s.charge('a:total', 5, 100); // third record: compaction, nothing expired yet
  t.same([...s.entries()].map(([k]) => k).sort(), ['a:2026-01', 'a:2026-01-10', 'a:total']);
  now = Date.parse('2026-02-20T00:00:00Z'); // 41 days later
  for (let i = 0; i < 3; i++) await s.charge('a:2026-02-20', 1, 100);
  t.same([...s.entries()].map(([k]) => k).sort(), ['a:2026-01', 'a:2026-02-20', 'a:total'], 'the old day is gone, month and total stay');
  await s.close();
  t.same([...(await reopenTotals(dir)).keys()].sort(), ['a:2026-01', 'a:2026-02-20', 'a:total']);
});

t.test('a torn last record (crash mid-append) is dropped, counted and cut off; earlier totals intact', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir);
  await s.charge('a:total', 100, BIG);
  await s.charge('b:total', 7, BIG);
  await s.close();
  const journal = path.join(dir, 'ledger.0.journal');
  const goodSize = statSync(journal).size;

  const partial = '{"k":"a:total","d":99999';
  appendFileSync(journal, partial);
  const logger = capturingLogger();
  const s2 = await FileBudgetStore.open(dir, { logger });
  t.equal(s2.repairedBytes, partial.length, 'dropped bytes are counted');
  t.equal(s2.stats().repairedBytes, partial.length);
  t.equal(s2.peek('a:total'), 100);
  t.equal(s2.peek('b:total'), 7);
  t.equal(statSync(journal).size, goodSize, 'the file was truncated to the last good record');
  t.ok(logger.lines.some((l) => l.level === 'warn' && /torn/.test(l.msg ?? '')), 'logged a warning');
  await s2.charge('a:total', 1, BIG); // appends after the cut, not after the garbage
  await s2.close();

  // A complete last line with a bad checksum is torn too (e.g. zero-filled by a power cut).
  appendFileSync(journal, '{"k":"b:total","d":5,"t":1}\tdeadbeef\n');
  const s3 = await FileBudgetStore.open(dir);
  t.ok(s3.repairedBytes > 0);
  t.same(Object.fromEntries(s3.entries()), { 'a:total': 101, 'b:total': 7 });
  await s3.close();
  const s4 = await FileBudgetStore.open(dir);
  t.equal(s4.repairedBytes, 0, 'clean after repair');
  await s4.close();
});

t.test('a damaged record before the last one refuses to open (fail closed), naming file and line', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir);
  for (const amount of [10, 20, 30]) await s.charge('a:total', amount, BIG);
  await s.close();
  const journal = path.join(dir, 'ledger.0.journal');
  const text = readFileSync(journal, 'utf8');
  writeFileSync(journal, text.replace('"d":20', '"d":29')); // line 2 no longer matches its checksum
  const err = await FileBudgetStore.open(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, SidecarError);
  t.equal((err as SidecarError).reason, 'budget_ledger_corrupt');
  t.match((err as Error).message, `${journal}:2:`);
  t.notOk(existsSync(path.join(dir, 'ledger.lock')), 'a failed open releases the lock');

  writeFileSync(journal, text.replace(/\n/, '\n\n')); // an empty line in the middle
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_corrupt' });
});

t.test('inconsistent ledger files refuse to open; compaction leftovers are cleaned up', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir, { compactEvery: 2 });
  for (let i = 0; i < 5; i++) await s.charge('a:total', 1, BIG);
  const gen = s.stats().generation;
  await s.close();
  t.equal(gen, 2);

  // Crash after the snapshot landed but before the old journal was deleted: it is ignored.
  writeFileSync(path.join(dir, 'ledger.1.journal'), '{"k":"a:total","d":1000,"t":1}\t00000000\n');
  // Crash after journal g+1 was created but before its snapshot landed: empty, deleted.
  writeFileSync(path.join(dir, 'ledger.3.journal'), '');
  writeFileSync(path.join(dir, '.ledger.snapshot.1234.abcdef.tmp'), '{"half');
  const s2 = await FileBudgetStore.open(dir);
  t.equal(s2.peek('a:total'), 5);
  await s2.close();
  t.same(journalFiles(dir), ['ledger.2.journal']);
  t.notOk(existsSync(path.join(dir, '.ledger.snapshot.1234.abcdef.tmp')));

  writeFileSync(path.join(dir, 'ledger.3.journal'), '{"k":"a:total","d":1,"t":1}\tffffffff\n');
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_corrupt', message: /newer than ledger.snapshot/ });
  writeFileSync(path.join(dir, 'ledger.3.journal'), '');

  const snapshot = readFileSync(path.join(dir, 'ledger.snapshot'), 'utf8');
  writeFileSync(path.join(dir, 'ledger.snapshot'), snapshot.replace(/"a:total":\d+/, '"a:total":1.5'));
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_corrupt', message: /not an integer/ });
  writeFileSync(path.join(dir, 'ledger.snapshot'), '{"version":2}');
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_corrupt', message: /version/ });
  writeFileSync(path.join(dir, 'ledger.snapshot'), snapshot);
  t.equal((await reopenTotals(dir)).get('a:total'), 5);

  const orphan = tempDir(t);
  writeFileSync(path.join(orphan, 'ledger.0.journal'), '');
  await t.rejects(FileBudgetStore.open(orphan), { name: 'SidecarError', reason: 'budget_ledger_corrupt', message: /no ledger.snapshot/ });
});

t.test('lock: one owner per directory; a stale lock from a dead pid is taken over', async (t) => {
  const dir = tempDir(t);
  const first = await FileBudgetStore.open(dir);
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_locked', message: new RegExp(`pid ${process.pid}`) });
  // Another live process holds it (our parent shell stands in for a second sidecar).
  await first.close();
  writeFileSync(path.join(dir, 'ledger.lock'), JSON.stringify({ pid: process.ppid }));
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_locked' });

  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(dead.stdout);
  t.ok(deadPid > 0);
  writeFileSync(path.join(dir, 'ledger.lock'), JSON.stringify({ pid: deadPid }));
  const logger = capturingLogger();
  const taken = await FileBudgetStore.open(dir, { logger });
  t.match(JSON.parse(readFileSync(path.join(dir, 'ledger.lock'), 'utf8')), { pid: process.pid }, 'the lock now names us');
  t.ok(logger.lines.some((l) => l.level === 'warn' && /stale/.test(l.msg ?? '')));
  await taken.close();

  writeFileSync(path.join(dir, 'ledger.lock'), 'garbage');
  await t.rejects(FileBudgetStore.open(dir), { name: 'SidecarError', reason: 'budget_ledger_locked', message: /unreadable/ }, 'an unreadable lock is held (fail closed)');
});

t.test('open refuses a bad compactEvery and a path that is not a directory', async (t) => {
  const dir = tempDir(t);
  await t.rejects(FileBudgetStore.open(dir, { compactEvery: 0 }), { name: 'SidecarError', reason: 'budget_invalid_argument' });
  writeFileSync(path.join(dir, 'file'), '');
  await t.rejects(FileBudgetStore.open(path.join(dir, 'file')), { name: 'SidecarError', reason: 'budget_ledger_failed' });
});

t.test('entries and totals of many keys', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir, { compactEvery: 7 });
  await Promise.all(Array.from({ length: 200 }, (_, i) => s.charge(`agent-${i % 20}:total`, 3, BIG)));
  t.equal(sumTotals(s.entries()), 600);
  await s.close();
  t.equal(sumTotals(await reopenTotals(dir)), 600);
});

t.test('keys that look like object internals are plain data', async (t) => {
  const dir = tempDir(t);
  const s = await FileBudgetStore.open(dir, { compactEvery: 2 });
  await s.charge('__proto__', 5, BIG);
  await s.charge('constructor', 6, BIG); // second record: compaction writes both into the snapshot
  await s.charge('a\tb\n"c', 7, BIG);
  await s.close();
  t.same(Object.fromEntries(await reopenTotals(dir)), Object.fromEntries([['__proto__', 5], ['constructor', 6], ['a\tb\n"c', 7]]));
});
