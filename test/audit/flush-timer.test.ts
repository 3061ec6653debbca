/**
 * The sink's flush timer is armed only while records wait: an idle sidecar is not woken ten
 * times a second, and a record still reaches the file within the flush interval.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JsonLinesAuditSink } from '../../src/audit/index.js';

const armed = (sink: JsonLinesAuditSink) => (sink as unknown as { timer?: NodeJS.Timeout }).timer !== undefined;
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

t.test('idle: no timer; a record arms one, which writes it and disarms', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-timer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'timer-test', { flushIntervalMs: 50 });
  t.teardown(() => sink.flush());
  await sleep(120);
  t.notOk(armed(sink), 'a fresh, idle sink has no timer');
  t.equal(lines(file).length, 0);

  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', status: 200 });
  t.ok(armed(sink), 'the first pending record arms the flush timer');
  sink.record({ type: 'inbound_decision', decision: 'deny', reason: 'unknown_agent', status: 403 });
  // Written within the interval, without a sync() from us (allow for a slow machine).
  for (let i = 0; i < 100 && lines(file).length < 2; i++) await sleep(20);
  t.equal(lines(file).length, 2, 'both records reached the file');
  t.notOk(armed(sink), 'nothing waits: the timer is gone');

  // Idle again for several intervals: still nothing armed, nothing written.
  await sleep(200);
  t.notOk(armed(sink));
  t.equal(lines(file).length, 2);

  // More than a drain group (32) at once: drained on the spot, written at the next timer.
  for (let i = 0; i < 40; i++) sink.record({ type: 'outbound_decision', decision: 'allow', reason: 'forwarded', status: 200 });
  t.ok(armed(sink));
  for (let i = 0; i < 100 && lines(file).length < 42; i++) await sleep(20);
  t.equal(lines(file).length, 42, 'the staged group and the rest were written');
  t.notOk(armed(sink));
  const seqs = lines(file).map((l) => (JSON.parse(l) as { seq: number }).seq);
  t.same(seqs, Array.from({ length: 42 }, (_, i) => i + 1), 'in order, no gaps');
});

t.test('flush() clears an armed timer and writes what waits', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-timer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'timer-test', { flushIntervalMs: 60_000 });
  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', status: 200 });
  t.ok(armed(sink));
  await sink.flush();
  t.notOk(armed(sink), 'closed: no timer left behind');
  t.equal(lines(file).length, 1);
});
