/**
 * The sink's staging buffers are reused once their write completes, also when several writes
 * were in flight at once: a dropped buffer would be garbage outside the V8 heap until the next
 * full collection (see sink.ts).
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JsonLinesAuditSink } from '../../src/audit/index.js';
import { verifyAuditFile } from '../../src/audit/verify.js';

t.test('bursts of several staging buffers reuse the buffers of earlier bursts', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-staging-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'test', { fsync: false });
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
  const text = readFileSync(file, 'utf8');
  t.equal(text.split('\n').filter(Boolean).length, bursts * perBurst, 'every record written');
  const report = await verifyAuditFile(file);
  t.ok(report.ok, 'the chain is intact across reused buffers');
  t.equal(report.records, bursts * perBurst, 'every record chained');
});
