import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import t from 'tap';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { lineHash, ZERO_HASH } from '../../src/audit/chain.js';
import { verifyAuditFile } from '../../src/audit/verify.js';
import { findTail, planResume } from '../../src/audit/tail.js';
import { decision, fileLines, tempDir, writeChain } from './fixtures.js';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

t.test('a restarted sink continues the chain on the same file', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, 30, 0);
  const before = fileLines(file);
  await writeChain(file, 25, 30);
  const lines = fileLines(file);
  t.equal(lines.length, 56, 'nothing extra (no second genesis) is written on a clean restart');
  t.same(lines.slice(0, 31), before, 'the first run is untouched');
  const first = JSON.parse(lines[31]!);
  t.equal(first.seq, 31);
  t.equal(first.prev, sha256(lines[30]!), 'the second run links to the first');
  t.equal(first.chain, JSON.parse(lines[0]!).chain, 'and keeps its chain ID');
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.match(r, { records: 56, firstSeq: 0, lastSeq: 55 });
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('restart reads only the tail, also when the last line is longer than the first window', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'sc');
  sink.record(decision(0));
  sink.record({ type: 'admin_action', decision: 'allow', reason: 'policy_reload', action: 'policy_reload', detail: 'x'.repeat(200_000), principal: 'ops' });
  await sink.flush();
  await writeChain(file, 3, 1);
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.equal(r.lastSeq, 5);
});

t.test('a torn last line is truncated away and the repair is audited in the chain', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, 10);
  const whole = fileLines(file);
  const torn = '{"time":"2025-01-01T00:00:00.000Z","seq":11,"prev":"ab';
  appendFileSync(file, torn);
  t.match((await verifyAuditFile(file)).errors, [{ line: 12, reason: 'torn_tail' }], 'verify reports the torn tail');
  await writeChain(file, 2, 10);
  const lines = fileLines(file);
  t.same(lines.slice(0, 11), whole);
  const repair = JSON.parse(lines[11]!);
  t.match(repair, {
    seq: 11,
    prev: sha256(whole[10]!),
    log: 'audit',
    type: 'audit_tail_repaired',
    decision: 'error',
    reason: 'torn_tail',
    detail: `dropped ${torn.length} bytes sha256=${sha256(torn)}`,
  });
  t.match(JSON.parse(lines[12]!), { seq: 12, type: 'inbound_decision' });
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.equal(r.lastSeq, 13);
});

t.test('a file holding only a torn line starts a fresh chain with the repair record', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  writeFileSync(file, '{"time":"2025');
  const sink = new JsonLinesAuditSink(file);
  t.same(sink.head().seq, 1, 'the genesis and repair records are drained at once');
  await sink.flush();
  const lines = fileLines(file);
  t.equal(lines.length, 2);
  t.match(JSON.parse(lines[0]!), { seq: 0, prev: ZERO_HASH, type: 'audit_chain_start' });
  t.match(JSON.parse(lines[1]!), { seq: 1, prev: sha256(lines[0]!), type: 'audit_tail_repaired', detail: /dropped 13 bytes/ });
  t.ok((await verifyAuditFile(file)).ok);
});

t.test('an old unchained file gets a chain-start segment linked to its last line', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  const old = [
    '{"time":"2024-05-01T00:00:00.000Z","log":"audit","sidecar":"sc","type":"inbound_decision","decision":"allow","reason":"allowed"}',
    '{"time":"2024-05-01T00:00:01.000Z","log":"audit","sidecar":"sc","type":"inbound_decision","decision":"deny","reason":"unknown_agent"}',
  ];
  writeFileSync(file, old.map((l) => `${l}\n`).join(''));
  await writeChain(file, 3);
  const lines = fileLines(file);
  t.same(lines.slice(0, 2), old, 'old lines are kept');
  t.match(JSON.parse(lines[2]!), { seq: 0, prev: sha256(old[1]!), type: 'audit_chain_start', reason: 'unchained_predecessor' });
  t.match(JSON.parse(lines[3]!), { seq: 1, prev: sha256(lines[2]!) });
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.match(r, { records: 4, unchained: 2, firstSeq: 0, firstPrev: sha256(old[1]!) });
  // Editing the last old line breaks the link to the chain.
  writeFileSync(file, readFileSync(file, 'utf8').replace('unknown_agent', 'unknown_agenT'));
  t.match((await verifyAuditFile(file)).errors, [{ line: 3, reason: 'prev_mismatch', previousLine: 2 }]);
});

t.test('an unchained line with a torn tail: chain start, then the repair', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  writeFileSync(file, 'not json at all\n{"torn');
  await writeChain(file, 1);
  const lines = fileLines(file);
  t.same(lines.map((l, i) => (i === 0 ? l : JSON.parse(l).type)), ['not json at all', 'audit_chain_start', 'audit_tail_repaired', 'inbound_decision']);
  const r = await verifyAuditFile(file);
  t.match(r.errors, [{ line: 1, reason: 'malformed_line' }], 'the junk line itself is still reported');
  t.equal(r.errorCount, 1);
});

t.test('tail analysis (pure)', async (t) => {
  t.same(findTail(Buffer.from('a\nb\n'), true), { lastLine: Buffer.from('b'), torn: Buffer.alloc(0) });
  t.same(findTail(Buffer.from('\nb'), true), { lastLine: Buffer.alloc(0), torn: Buffer.from('b') });
  t.same(findTail(Buffer.from('abc'), true), { lastLine: undefined, torn: Buffer.from('abc') });
  t.equal(findTail(Buffer.from('abc'), false), undefined, 'needs a longer window');
  t.equal(findTail(Buffer.from('bc\n'), false), undefined, 'the line may start before the window');
  t.same(findTail(Buffer.from('x\nbc\n'), false), { lastLine: Buffer.from('bc'), torn: Buffer.alloc(0) });
  const plan = planResume({ lastLine: Buffer.from(''), torn: Buffer.alloc(0) }, 1);
  t.match(plan, { seq: -1, head: lineHash(Buffer.alloc(0)), notes: [{ type: 'audit_chain_start' }] }, 'an empty last line is not a record');
});

t.test('a write failure stops the sink, reports once, and drops later records', async (t) => {
  const errors: Error[] = [];
  const sink = new JsonLinesAuditSink('/dev/full', 'sc', { onError: (e) => errors.push(e) });
  sink.record(decision(1));
  await sink.sync();
  t.equal(errors.length, 1);
  t.match(sink.failed, { code: 'ENOSPC' });
  sink.record(decision(2));
  t.equal(sink.dropped, 1);
  await sink.flush();
  t.equal(errors.length, 1);
});

t.test('records after close are dropped and counted', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  const sink = await writeChain(file, 2);
  sink.record(decision(3));
  t.equal(sink.dropped, 1);
  t.equal(fileLines(file).length, 3);
  truncateSync(file, 0);
  await writeChain(file, 1);
  t.match(JSON.parse(fileLines(file)[0]!), { seq: 0, prev: ZERO_HASH, type: 'audit_chain_start' }, 'an emptied file starts a fresh chain');
});
