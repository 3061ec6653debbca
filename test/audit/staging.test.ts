/**
 * The sink's staging buffers are reused once their write completes, also when several writes
 * were in flight at once: a dropped buffer would be garbage outside the V8 heap until the next
 * full collection (see sink.ts). Writes that fall behind show in readiness.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AUDIT_BACKLOG_LIMIT_BYTES, JsonLinesAuditSink } from '../../src/audit/sink.js';
import { verifyAuditChain } from '../../src/audit/verify.js';

t.test('bursts of several staging buffers reuse the buffers of earlier bursts', { skip: process.platform === 'linux' ? false : 'FIFO semantics (Linux)' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-staging-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A pipe target is written on the thread pool (a regular file is written synchronously at
  // the end of each turn and never holds a buffer): bursts keep several writes in flight.
  const fifo = path.join(dir, 'audit.fifo');
  execFileSync('mkfifo', [fifo]);
  const sink = new JsonLinesAuditSink(fifo, 'test', { fsync: false });
  const chunks: Buffer[] = [];
  const reader = createReadStream(fifo);
  reader.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => reader.once('end', () => r()));
  // ~2.1 KB per line: 360 records fill about three 256 KiB buffers, staged before any write ends.
  const longPath = `/files/${'a'.repeat(2000)}`;
  const bursts = 10;
  const perBurst = 360;
  const allocated: number[] = [];
  for (let b = 0; b < bursts; b++) {
    for (let i = 0; i < perBurst; i++) {
      sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', method: 'GET', path: longPath, status: 200 });
    }
    await sink.sync();
    allocated.push(sink.stagingBuffers.allocated);
  }
  t.ok(allocated[0]! >= 3, `a burst holds several buffers at once (${allocated[0]} after the first)`);
  t.equal(allocated[bursts - 1], allocated[0], `later bursts allocate none (${allocated.join(', ')})`);
  t.ok(sink.stagingBuffers.spare <= 4, 'at most four are kept');
  await sink.flush();
  await ended;
  const report = await verifyAuditChain(Buffer.concat(chunks));
  t.ok(report.ok, 'the chain is intact across reused buffers');
  t.equal(report.records, bursts * perBurst + 1, 'every record chained (and the genesis record)');
});

t.test('writes that fall behind take the sink out of readiness until they catch up; nothing is dropped', { skip: process.platform === 'linux' ? false : 'FIFO semantics (Linux)' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-backlog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A FIFO nobody reads yet: the first 64 KiB fit in the pipe, then the write waits (a stalled disk).
  const fifo = path.join(dir, 'audit.fifo');
  execFileSync('mkfifo', [fifo]);
  const sink = new JsonLinesAuditSink(fifo, 'test', { fsync: false, flushIntervalMs: 5 });
  t.equal(sink.readiness().ok, true, 'ready while nothing waits');
  const longPath = `/files/${'b'.repeat(2000)}`;
  const records = 5000; // ~10.6 MB of lines
  // Full staging buffers are handed to writes as they fill: the backlog shows at once.
  for (let i = 0; i < records; i++) sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed', path: longPath, status: 200 });
  const behind = sink.readiness();
  t.equal(behind.ok, false, 'not ready while the writes are behind');
  t.match(behind.detail, /^audit writes are \d+\.\d MiB behind \(limit 8\.0 MiB\)$/, behind.detail);
  t.ok(sink.backlogBytes > AUDIT_BACKLOG_LIMIT_BYTES, `backlog ${sink.backlogBytes} bytes`);

  // The disk catches up: a reader drains the FIFO.
  const chunks: Buffer[] = [];
  const reader = createReadStream(fifo);
  reader.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => reader.once('end', () => r()));
  await sink.sync();
  t.equal(sink.backlogBytes, 0, 'nothing waits once the writes complete');
  t.same(sink.readiness(), { ok: true, detail: `seq ${records}` }, 'ready again');
  await sink.flush(); // closes the FIFO's write end: the reader sees its end
  await ended;
  const report = await verifyAuditChain(Buffer.concat(chunks));
  t.equal(report.records, records + 1, 'every record was written (after the genesis record)');
  t.ok(report.ok, 'and the chain is intact');
});
