import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { AuditChainVerifier, verifyAuditChain, verifyAuditFile } from '../../src/audit/verify.js';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { lineHash, ZERO_HASH } from '../../src/audit/chain.js';
import { decision, fileLines, joinLines, tempDir, writeChain } from './fixtures.js';

/** A chain of 20 records written by the real sink, as lines: lines[0] is the genesis record (seq 0), lines[n] has seq n. */
async function chain(t: Test, count = 20): Promise<{ file: string; lines: string[] }> {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, count);
  return { file, lines: fileLines(file) };
}

t.test('a chain written by the sink verifies, and the head is the sha256 of the last line', async (t) => {
  const { file, lines } = await chain(t, 300);
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.match(r, { records: 301, firstSeq: 0, lastSeq: 300, firstPrev: ZERO_HASH, segments: 1, errorCount: 0, skipped: 0 });
  t.match(JSON.parse(lines[0]!), { seq: 0, prev: ZERO_HASH, type: 'audit_chain_start', reason: 'chain_genesis', sidecar: 'sc', chain: /^[0-9a-f]{16}$/ });
  // Cross-check the hash with OpenSSL, over the exact bytes of the last line.
  const last = path.join(path.dirname(file), 'last-line');
  writeFileSync(last, lines[300]!);
  const openssl = execFileSync('openssl', ['dgst', '-sha256', '-r', last], { encoding: 'utf8' }).split(' ')[0];
  t.equal(r.headHash, openssl, 'head matches openssl dgst -sha256');
});

t.test('lines beyond one staging buffer, and one line larger than it, are written whole and in order', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'sc');
  // About 1 MB of ordinary lines (several 256 KB staging buffers), then one 400 KB line.
  for (let i = 0; i < 5000; i++) sink.record(decision(i));
  const huge = 'x'.repeat(400 * 1024);
  sink.record({ type: 'admin_action', decision: 'allow', reason: 'test', action: 'test', principal: 'token', detail: huge });
  for (let i = 5000; i < 5010; i++) sink.record(decision(i));
  await sink.flush();
  const lines = fileLines(file);
  t.equal(lines.length, 5012);
  t.same(lines.map((l) => JSON.parse(l).seq), Array.from({ length: 5012 }, (_, i) => i), 'every seq once, in order');
  t.equal(JSON.parse(lines[5001]!).detail, huge);
  const r = await verifyAuditFile(file);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.equal(r.records, 5012);
});

t.test('sink head() reports the last drained record', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  const sink = new JsonLinesAuditSink(file, 'sc');
  t.same(sink.head(), { seq: 0, hash: lineHash(Buffer.from(fileLines(file)[0]!)), chain: sink.chain }, 'the genesis record, written at once');
  for (let i = 0; i < 10; i++) sink.record(decision(i));
  await sink.sync();
  const lines = fileLines(file);
  t.same(sink.head(), { seq: 10, hash: lineHash(Buffer.from(lines[10]!)), chain: sink.chain });
  await sink.flush();
});

t.test('streaming in tiny chunks gives the same report as one buffer', async (t) => {
  const { lines } = await chain(t, 50);
  const bytes = Buffer.from(joinLines(lines));
  const whole = await verifyAuditChain(bytes);
  const chunks = Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) => bytes.subarray(i * 7, i * 7 + 7));
  t.same(await verifyAuditChain(Readable.from(chunks)), whole);
  t.ok(whole.ok);
});

t.test('editing one byte of a middle record is detected at the next record, naming the edited line', async (t) => {
  const { lines } = await chain(t);
  const at = lines[10]!.indexOf('/v1/tool/9') + 9;
  lines[10] = `${lines[10]!.slice(0, at)}8${lines[10]!.slice(at + 1)}`; // one byte: /v1/tool/9 -> /v1/tool/8
  t.match(lines[10], '/v1/tool/8"');
  const r = await verifyAuditChain(joinLines(lines));
  t.notOk(r.ok);
  t.equal(r.errorCount, 1);
  t.match(r.errors[0], { line: 12, seq: 11, previousLine: 11, reason: 'prev_mismatch' });
  t.match(r.errors[0]!.detail, /line 11, seq 10/);
});

t.test('editing a record so it is no longer JSON names that line only', async (t) => {
  const { lines } = await chain(t);
  lines[4] = lines[4]!.slice(0, -1); // drop the closing brace
  const r = await verifyAuditChain(joinLines(lines));
  t.equal(r.errorCount, 1, JSON.stringify(r.errors));
  t.match(r.errors[0], { line: 5, reason: 'malformed_line' });
});

t.test('deleting a middle record is a seq gap at the line where it was', async (t) => {
  const { lines } = await chain(t);
  lines.splice(8, 1);
  const r = await verifyAuditChain(joinLines(lines));
  t.equal(r.errorCount, 1);
  t.match(r.errors[0], { line: 9, seq: 9, reason: 'seq_gap' });
  t.match(r.errors[0]!.detail, /expected seq 8, found 9: 1 record\(s\) missing/);
});

t.test('reordering two records is detected at the first moved line', async (t) => {
  const { lines } = await chain(t);
  [lines[6], lines[7]] = [lines[7]!, lines[6]!];
  const r = await verifyAuditChain(joinLines(lines));
  t.notOk(r.ok);
  t.match(r.errors[0], { line: 7, seq: 7, reason: 'seq_gap' });
  t.match(r.errors[1], { line: 8, seq: 6, reason: 'seq_out_of_order' });
});

t.test('an inserted forged record is detected', async (t) => {
  const { lines } = await chain(t);
  // A careful forger copies seq and links prev correctly: the record after it no longer links.
  const forged = JSON.stringify({ ...JSON.parse(lines[11]!), prev: lineHash(Buffer.from(lines[10]!)), decision: 'allow', reason: 'forged' });
  const careful = [...lines.slice(0, 11), forged, ...lines.slice(11)];
  let r = await verifyAuditChain(joinLines(careful));
  t.notOk(r.ok);
  t.match(r.errors[0], { line: 13, seq: 11, reason: 'seq_out_of_order', previousLine: 12 });
  // A careless one (no seq/prev) is named directly.
  const careless = [...lines.slice(0, 10), JSON.stringify({ time: 'x', log: 'audit', type: 'admin_action', decision: 'allow', reason: 'forged' }), ...lines.slice(10)];
  r = await verifyAuditChain(joinLines(careless));
  t.equal(r.errorCount, 1);
  t.match(r.errors[0], { line: 11, reason: 'unchained_record' });
});

t.test('junk lines, empty lines and torn tails are reported; junk between records does not cascade', async (t) => {
  const { lines } = await chain(t);
  const withJunk = [...lines.slice(0, 3), 'garbage', '', ...lines.slice(3)];
  let r = await verifyAuditChain(joinLines(withJunk));
  t.same(r.errors.map((e) => [e.line, e.reason]), [[4, 'malformed_line'], [5, 'malformed_line']]);
  r = await verifyAuditChain(joinLines(lines) + lines[0]!.slice(0, 30));
  t.same(r.errors.map((e) => [e.line, e.reason]), [[22, 'torn_tail']]);
  t.equal(r.lastSeq, 20);
  r = await verifyAuditChain(Buffer.from([0xff, 0xfe, 0x0a]));
  t.match(r.errors[0], { line: 1, reason: 'malformed_line' });
  r = await verifyAuditChain('{"log":"audit","seq":-1,"prev":"00"}\n');
  t.match(r.errors[0], { line: 1, reason: 'malformed_line', detail: /seq -1/ });
});

t.test('a second genesis inside a file is a chain restart error', async (t) => {
  const { lines } = await chain(t, 5);
  const r = await verifyAuditChain(joinLines([...lines, ...lines]));
  t.match(r.errors[0], { line: 7, seq: 0, reason: 'chain_restart' });
});

t.test('an anchored head detects records removed from the end', async (t) => {
  const { lines } = await chain(t);
  const head = lineHash(Buffer.from(lines[20]!));
  const truncated = joinLines(lines.slice(0, 18));
  t.ok((await verifyAuditChain(truncated)).ok, 'without an anchor the shortened chain looks valid');
  let r = await verifyAuditChain(truncated, { expect: { seq: 20, head } });
  t.match(r.errors, [{ reason: 'anchor_missing', seq: 20 }]);
  r = await verifyAuditChain(truncated, { expect: { head } });
  t.match(r.errors, [{ reason: 'anchor_missing' }]);
  r = await verifyAuditChain(truncated, { expect: { seq: 18 } });
  t.match(r.errors, [{ reason: 'anchor_missing', detail: /last seq 17/ }]);
  // An anchor taken earlier still holds after the log has grown.
  r = await verifyAuditChain(joinLines(lines), { expect: { seq: 15, head: lineHash(Buffer.from(lines[15]!)) } });
  t.ok(r.ok);
  r = await verifyAuditChain(joinLines(lines), { expect: { seq: 15, head } });
  t.match(r.errors, [{ reason: 'anchor_mismatch', seq: 15 }]);
});

t.test('a mixed stdout stream (pino lines + audit lines across a restart) verifies in mixed mode', async (t) => {
  const { lines } = await chain(t, 10);
  const { lines: second } = await chain(t, 4);
  const pino = (i: number) => JSON.stringify({ level: 30, time: '2025-01-01T00:00:00.000Z', sidecar: 'sc', msg: `log ${i}` });
  const mixed = [pino(0), 'plain text from a library', ...lines.flatMap((l, i) => [l, pino(i + 1)]), ...second, pino(99)];
  const text = joinLines(mixed) + '{"level":30,"msg":"cut';
  let r = await verifyAuditChain(text, { mixed: true });
  t.ok(r.ok, JSON.stringify(r.errors));
  t.match(r, { records: 16, segments: 2, skipped: 15, lastSeq: 4 });
  r = await verifyAuditChain(text);
  t.notOk(r.ok, 'strict mode rejects the non-audit lines');
  // A damaged audit line in a mixed stream is still an error.
  mixed[4] = mixed[4]!.slice(0, -2);
  r = await verifyAuditChain(joinLines(mixed), { mixed: true });
  t.match(r.errors, [{ line: 5, reason: 'malformed_line' }]);
  t.equal(r.errorCount, 1);
});

t.test('the sink on stdout writes chained lines that verify', async (t) => {
  // Run the sink in a child with stdout piped to us, mixed with pino output.
  const script = `
    const { JsonLinesAuditSink } = await import(${JSON.stringify(new URL('../../src/audit/sink.js', import.meta.url).href)});
    const { createLogger } = await import(${JSON.stringify(new URL('../../src/log.js', import.meta.url).href)});
    const log = createLogger({ name: 'sc' });
    const sink = new JsonLinesAuditSink('stdout', 'sc');
    for (let i = 0; i < 500; i++) { sink.record({ type: 'outbound_decision', decision: 'allow', reason: 'ok', route: 'r' + i }); if (i % 50 === 0) log.info({ i }, 'tick'); }
    await sink.flush(); log.flush();`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  const r = await verifyAuditChain(out, { mixed: true });
  t.ok(r.ok, JSON.stringify(r.errors));
  t.equal(r.records, 501, "the genesis record and 500 more");
  t.ok(r.skipped >= 1, 'pino lines were present and skipped');
});

t.test('errors are capped but counted', async (t) => {
  const v = new AuditChainVerifier();
  v.update(Buffer.from('x\n'.repeat(1500)));
  const r = v.finish();
  t.equal(r.errorCount, 1500);
  t.equal(r.errors.length, 1000);
  t.equal(r.lines, 1500);
});

t.test('an over-long line is reported without being held in memory', async (t) => {
  const r = await verifyAuditChain(Readable.from([Buffer.alloc(3000, 0x61), Buffer.alloc(3000, 0x61), Buffer.from('\n{}\n')]), { maxLineBytes: 4096 });
  t.same(r.errors.map((e) => [e.line, e.reason]), [[1, 'line_too_long'], [2, 'malformed_line']]);
});

t.test('prev of record n is the sha256 of line n-1 (independent computation)', async (t) => {
  const { lines } = await chain(t, 5);
  for (let i = 1; i < lines.length; i++) t.equal(JSON.parse(lines[i]!).prev, createHash('sha256').update(lines[i - 1]!, 'utf8').digest('hex'));
});
