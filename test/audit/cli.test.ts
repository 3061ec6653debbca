import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { lineHash } from '../../src/audit/chain.js';
import { auditCommand } from '../../src/cli/audit.js';
import { fileLines, joinLines, tempDir, writeChain } from './fixtures.js';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await auditCommand(argv, out, err);
  return { code, out: o, err: e };
}

t.test('intact chain: exit 0 and the head is printed in full', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, 12);
  const head = lineHash(Buffer.from(fileLines(file)[12]!));
  const r = await run(['verify', file]);
  t.equal(r.code, 0, r.out + r.err);
  t.match(r.out, `audit chain intact: 13 records (seq 0..12), head sha256 ${head}`);
  t.match(r.out, /removed from the end/);
  t.equal(r.err, '');
  const j = await run(['verify', file, '--json']);
  t.equal(j.code, 0);
  t.match(JSON.parse(j.out), { ok: true, records: 13, headHash: head, errors: [] });
  t.equal((await run(['verify', file, '--expect-seq', '12', '--expect-head', head.toUpperCase()])).code, 0, 'anchor matches');
});

t.test('broken chain: exit 1 with every problem and its line', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, 12);
  const lines = fileLines(file);
  lines.splice(4, 1);
  lines[8] = lines[8]!.replace('"status":200', '"status":201');
  writeFileSync(file, joinLines(lines));
  const r = await run(['verify', file]);
  t.equal(r.code, 1);
  t.match(r.out, 'audit chain BROKEN: 2 problem(s)');
  t.match(r.out, /line 5 \(seq 5\): seq_gap: expected seq 4, found 5/);
  t.match(r.out, /line 10 \(seq 10\): prev_mismatch: .*line 9, seq 9/);
  const j = JSON.parse((await run(['verify', file, '--json'])).out);
  t.same(j.errors.map((e: { line: number; reason: string }) => [e.line, e.reason]), [[5, 'seq_gap'], [10, 'prev_mismatch']]);
});

t.test('--expect-head / --expect-seq detect truncation of the tail', async (t) => {
  const file = path.join(tempDir(t), 'audit.log');
  await writeChain(file, 12);
  const lines = fileLines(file);
  const head = lineHash(Buffer.from(lines[12]!));
  writeFileSync(file, joinLines(lines.slice(0, 10)));
  t.equal((await run(['verify', file])).code, 0, 'the chain alone cannot tell');
  let r = await run(['verify', file, '--expect-head', head]);
  t.equal(r.code, 1);
  t.match(r.out, /anchor_missing: no record hashes to the expected head/);
  r = await run(['verify', file, '--expect-seq', '12', '--expect-head', head]);
  t.equal(r.code, 1);
  t.match(r.out, /\(seq 12\): anchor_missing: no record with seq 12 \(last seq 9\)/);
});

t.test('mixed stdout capture needs --mixed', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'audit.log');
  await writeChain(file, 3);
  const mixed = path.join(dir, 'stdout.log');
  writeFileSync(mixed, joinLines(['{"level":30,"msg":"hello"}', ...fileLines(file), '{"level":40,"msg":"bye"}']));
  t.equal((await run(['verify', mixed])).code, 1);
  const r = await run(['verify', mixed, '--mixed']);
  t.equal(r.code, 0, r.out);
  t.match(r.out, 'skipped 2 non-audit line(s)');
});

t.test('usage errors and unreadable files: exit 2', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'audit.log');
  await writeChain(file, 1);
  mkdirSync(path.join(dir, 'sub'));
  const cases: [string, string[], RegExp][] = [
    ['no subcommand', [], /a subcommand is required/],
    ['unknown subcommand', ['check', file], /unknown subcommand "check"/],
    ['no file', ['verify'], /FILE is required/],
    ['two files', ['verify', file, file], /exactly one FILE/],
    ['unknown option', ['verify', file, '--bogus'], /bogus/],
    ['bad seq', ['verify', file, '--expect-seq', '0'], /--expect-seq must be a positive integer/],
    ['bad head', ['verify', file, '--expect-head', 'abc'], /--expect-head must be a SHA-256/],
    ['missing file', ['verify', path.join(dir, 'nope.log')], /cannot read .*nope\.log: .*ENOENT/],
    ['directory', ['verify', path.join(dir, 'sub')], /cannot read .*not a regular file|EISDIR/],
  ];
  for (const [name, argv, msg] of cases) {
    const r = await run(argv);
    t.equal(r.code, 2, name);
    t.match(r.err, msg, name);
    t.equal(r.out, '', `${name}: nothing on stdout`);
  }
  const help = await run(['help']);
  t.equal(help.code, 0);
  t.match(help.out, /cannot be detected by the chain alone/);
});
