/**
 * The sink writes at the end of the event-loop turn in which records arrived: nothing is armed
 * while idle (an idle sidecar is never woken), and a record is in the file before the next turn.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';

const armed = (sink: JsonLinesAuditSink) => (sink as unknown as { immediate?: unknown }).immediate !== undefined;
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

t.test('idle: nothing armed; records are in the file by the next turn', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-turn-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'turn-test', { flushIntervalMs: 60_000 });
  t.teardown(() => sink.flush());
  t.equal(lines(file).length, 1, 'the genesis record is written at once');
  await sleep(50);
  t.notOk(armed(sink), 'a fresh, idle sink has nothing armed');

  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', status: 200 });
  sink.record({ type: 'inbound_decision', decision: 'deny', reason: 'unknown_agent', status: 403 });
  t.ok(armed(sink), 'a pending record arms the end-of-turn write');
  t.equal(lines(file).length, 1, 'nothing written inside the turn (the hot path does no I/O)');
  await nextTurn();
  t.equal(lines(file).length, 3, 'both records are in the file by the next turn, without a sync() and long before any interval');
  t.notOk(armed(sink), 'nothing waits: nothing armed');

  // More than a drain group (32) in one turn: all written at its end, in order.
  for (let i = 0; i < 40; i++) sink.record({ type: 'outbound_decision', decision: 'allow', reason: 'forwarded', status: 200 });
  await nextTurn();
  t.equal(lines(file).length, 43);
  const seqs = lines(file).map((l) => (JSON.parse(l) as { seq: number }).seq);
  t.same(seqs, Array.from({ length: 43 }, (_, i) => i), 'in order, no gaps');
});

t.test('flush() clears what is armed and writes what waits', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-turn-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'turn-test', { flushIntervalMs: 60_000 });
  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', status: 200 });
  t.ok(armed(sink));
  await sink.flush();
  t.notOk(armed(sink), 'closed: nothing left behind');
  t.equal(lines(file).length, 2);
});
