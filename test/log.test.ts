import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createHash } from 'node:crypto';
import { JsonLinesAuditSink } from '../src/audit/sink.js';

t.test('audit lines: valid JSON, in order, file 0600, nothing lost on close', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sub', 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'cp');
  for (let i = 0; i < 5000; i++) {
    if (i === 2500) sink.record({ type: 'peer_rejected', decision: 'deny', reason: 'long', detail: 'é'.repeat(40_000) });
    sink.record({ type: 'inbound_decision', decision: i % 2 ? 'allow' : 'deny', reason: 'r', path: `/p/${i}"\\u00e9`, status: 200 + i, latency_ms: 0.5 });
  }
  await sink.flush();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  t.equal(lines.length, 5002, 'the genesis record and 5001 more');
  t.match(JSON.parse(lines.shift()!), { seq: 0, type: 'audit_chain_start' });
  const long = JSON.parse(lines[2500]!);
  t.equal(long.detail, 'é'.repeat(40_000), 'a line larger than a batch is written whole, in order');
  lines.splice(2500, 1);
  const recs = lines.map((l) => JSON.parse(l));
  t.same(recs.map((r) => r.status), Array.from({ length: 5000 }, (_, i) => 200 + i), 'in order');
  t.equal(recs[0].log, 'audit');
  t.equal(recs[0].sidecar, 'cp');
  t.match(recs[0].time, /^\d{4}-\d\d-\d\dT/);
  t.equal(recs[1].path, '/p/1"\\u00e9');
  const all = readFileSync(file, 'utf8').trimEnd().split('\n');
  t.same(all.map((l) => JSON.parse(l).seq), Array.from({ length: 5002 }, (_, i) => i), 'seq counts 0..N');
  t.equal(JSON.parse(all[0]!).prev, '0'.repeat(64), 'a fresh chain starts from zeros');
  t.ok(
    all.every((l, i) => i === 0 || JSON.parse(l).prev === createHash('sha256').update(all[i - 1]!).digest('hex')),
    'each prev is the sha256 of the previous line',
  );
  t.match(all[0], /^\{"time":"[^"]+","seq":0,"prev":"0{64}","log":"audit","sidecar":"cp","chain":"[0-9a-f]{16}",/, 'seq and prev right after time');
  t.equal(statSync(file).mode & 0o777, 0o600);
  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'late', status: 1 });
  t.equal(readFileSync(file, 'utf8').trimEnd().split('\n').length, 5002, 'records after close are dropped, not crashing');
});
