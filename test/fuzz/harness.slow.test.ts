/**
 * The fuzz harness itself: inputs are reproducible from (seed, target, iteration); typed errors
 * pass while other exceptions, bad reason codes and a spinning parser are findings, written to
 * the crash folder with the input; after a hang the run resumes at the next input; the CLI's
 * timed run, --list and --replay.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { makeInput } from '../../fuzz/engine.js';
import { runTarget } from '../../fuzz/runner.js';
import { classifyThrown } from '../../fuzz/target.js';
import { SidecarError } from '../../src/errors.js';
import type { ReasonCode } from '../../src/reasons.js';

const crashDir = mkdtempSync(path.join(tmpdir(), 'fuzz-harness-'));
t.teardown(() => rmSync(crashDir, { recursive: true, force: true }));
const targetsModule = new URL('./harness-targets.js', import.meta.url).href;

t.test('inputs depend only on seed, target and iteration', async (t) => {
  const corpus = [Buffer.from('hello world'), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])];
  const a = Array.from({ length: 200 }, (_, i) => Buffer.from(makeInput(corpus, { offsets: [2] }, 42, 'x', i)).toString('hex'));
  const b = Array.from({ length: 200 }, (_, i) => Buffer.from(makeInput(corpus, { offsets: [2] }, 42, 'x', i)).toString('hex'));
  t.same(a, b, 'same seed: same inputs');
  t.equal(a[0], corpus[0]!.toString('hex'), 'the seeds themselves come first');
  const other = Array.from({ length: 200 }, (_, i) => Buffer.from(makeInput(corpus, { offsets: [2] }, 43, 'x', i)).toString('hex'));
  t.not(other.slice(2).join(), a.slice(2).join(), 'another seed: other inputs');
  t.ok(new Set(a).size > 150, `mutations vary (${new Set(a).size} distinct of 200)`);
});

t.test('classification: the project\'s typed error with a snake_case reason, or a finding', async (t) => {
  t.same(classifyThrown(new SidecarError('evidence_malformed', 'x')), { kind: 'typed', reason: 'evidence_malformed' });
  t.equal(classifyThrown(new RangeError('boom')).kind, 'untyped');
  t.equal(classifyThrown(new SidecarError('Bad Reason' as ReasonCode, 'x')).kind, 'untyped');
  t.equal(classifyThrown('a string').kind, 'untyped');
});

t.test('typed errors only: no findings', async (t) => {
  const r = await runTarget('typed-only', { seed: 1, iterations: 300, crashDir, targetsModule });
  t.equal(r.iterations, 300);
  t.equal((r.counts.ok ?? 0) + (r.counts.typed ?? 0), 300);
  t.ok((r.counts.typed ?? 0) > 0 && (r.counts.ok ?? 0) > 0);
  t.same(r.findings, []);
});

t.test('untyped exceptions and bad reason codes are findings, saved with their input', async (t) => {
  const r = await runTarget('untyped-on-short', { seed: 1, iterations: 300, crashDir, targetsModule });
  const kinds = r.findings.map((f) => f.kind);
  t.ok(kinds.length >= 2 && kinds.every((k) => k === 'untyped'), `findings: ${kinds.join(', ')}`);
  t.ok(r.findings.some((f) => /TypeError: short input/.test(f.error)));
  t.ok(r.findings.some((f) => /Not A Reason|SidecarError/.test(f.error)));
  const saved = JSON.parse(readFileSync(r.findings.find((f) => /TypeError/.test(f.error))!.file, 'utf8'));
  t.equal(saved.seed, 1);
  t.equal(saved.target, 'untyped-on-short');
  t.ok(Buffer.from(saved.inputBase64, 'base64').length < 4, 'the saved input is the one that failed');
  t.equal(Buffer.from(makeInput([Buffer.from('abcdefgh')], {}, 1, 'untyped-on-short', saved.iteration)).toString('base64'), saved.inputBase64, 'and seed + iteration reproduce it');
});

t.test('a parser that spins is a hang: its worker is killed and the run goes on', async (t) => {
  const r = await runTarget('spins-on-x', { seed: 5, iterations: 400, hangCpuMs: 1000, crashDir, targetsModule });
  const hang = r.findings.find((f) => f.kind === 'hang');
  t.ok(hang, 'a hang was found');
  const saved = JSON.parse(readFileSync(hang!.file, 'utf8'));
  t.ok(Buffer.from(saved.inputBase64, 'base64').includes('x'), 'the saved input is one that spins');
  t.ok((r.counts.hang ?? 0) >= 1);
  t.ok((r.counts.ok ?? 0) > 0, 'inputs after the hang still ran');
  t.equal(r.iterations, 400, 'every input accounted for');
});

t.test('npm run fuzz: a timed run, --list and --replay', async (t) => {
  const main = fileURLToPath(new URL('../../fuzz/main.js', import.meta.url));
  const run = (args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_OPTIONS: '' } });
  const timed = run(['--target', 'canonical-path', '--seconds', '1', '--seed', '9', '--crash-dir', crashDir]);
  t.equal(timed.status, 0, timed.stderr);
  t.match(timed.stdout, /^fuzz: seed 9, 1 target\(s\), 1 s each/);
  t.match(timed.stdout, /canonical-path: [1-9]\d* inputs/);
  t.match(timed.stdout, /fuzz: no findings/);
  const list = run(['--list']);
  t.match(list.stdout, /^sev-snp-report\s+SEV-SNP attestation report/m);
  const file = path.join(crashDir, 'replay.json');
  writeFileSync(file, JSON.stringify({ target: 'sim-report', inputBase64: Buffer.from('not a report').toString('base64') }));
  const replay = run(['--replay', file]);
  t.equal(replay.status, 0, replay.stderr);
  t.match(replay.stdout, /sim-report: typed error evidence_malformed: sim report is 12 bytes/);
  const unknown = run(['--target', 'no-such-target']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown target\(s\) no-such-target/);
});
