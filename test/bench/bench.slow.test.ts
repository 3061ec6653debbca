/**
 * Runs the benchmark end to end in its tiny mode (`--quick --json`, with two 0.5 s rounds at 1 and
 * 4 connections instead of one) and checks the report's shape, that each round ran on servers
 * started for it, and that no request failed. It asserts no timings
 * or ratios: those are measurements, not pass/fail criteria for a unit test.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIOS } from '../../bench/report.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

interface RunOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runBench(args: string[]): Promise<RunOutput> {
  const root = repoRoot();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'dist/bench/run.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

t.test('npm run bench -- --quick --json prints one complete report with zero errors', async (t) => {
  const out = await runBench(['--quick', '--json', '--rounds', '2']);
  const lines = out.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'stdout is exactly one line (progress goes to stderr)');
  let report: any;
  t.doesNotThrow(() => (report = JSON.parse(lines[0]!)), 'stdout is JSON');
  if (!report) return;
  if (report.error) {
    t.fail(`the benchmark failed to start: ${report.error}`);
    return;
  }
  const failures = report.results
    .filter((r: any) => r.errors > 0 || r.non2xx > 0)
    .map((r: any) => `${r.scenario}@${r.connections}: ${r.errors} errors, ${r.non2xx} non-2xx, first: ${r.firstError}`);
  t.equal(out.code, 0, `exit status 0${failures.length ? '\n' + failures.join('\n') : ''}`);

  t.same(report.settings.connections, [1, 4], 'quick mode measures 1 and 4 connections');
  t.equal(report.settings.rounds, 2, '--rounds overrides quick mode\'s one round');
  // Every round on servers started for it: the same servers, none of them the previous round's.
  t.equal(report.instances.length, 2, 'one start of the servers per round');
  const [first, second] = report.instances as Record<string, number>[];
  t.same(Object.keys(second!).sort(), Object.keys(first!).sort(), 'the same servers in both rounds');
  t.ok(Object.keys(first!).includes('sidecar-inbound') && Object.keys(first!).includes('app'), 'the app and the sidecars are among them');
  for (const name of Object.keys(first!)) t.not(second![name], first![name], `${name}: a new process in round 2`);
  t.equal(report.settings.settleSeconds, 0.1, 'quick mode settles each scenario for 0.1 s before its measured run');
  // Every scenario the bench defines, at every connection level, exactly once.
  const expected = SCENARIOS.flatMap((s) => [1, 4].map((c) => `${s}@${c}`)).sort();
  t.same(report.results.map((r: any) => `${r.scenario}@${r.connections}`).sort(), expected, 'every scenario x connection level');
  for (const r of report.results) {
    const label = `${r.scenario}@${r.connections}`;
    t.ok(isNum(r.reqPerSec) && r.reqPerSec > 0, `${label}: req/s measured`);
    t.ok(isNum(r.p50Ms) && isNum(r.p99Ms) && r.p99Ms >= r.p50Ms, `${label}: p50 <= p99`);
    t.ok(r.requests > 0, `${label}: requests completed`);
    t.equal(r.errors, 0, `${label}: no transport errors${r.firstError ? ' (' + r.firstError + ')' : ''}`);
    t.equal(r.non2xx, 0, `${label}: no non-2xx responses${r.firstError ? ' (' + r.firstError + ')' : ''}`);
  }
  t.equal(report.ratios.length, 2);
  for (const q of report.ratios) {
    t.ok(isNum(q.reqPerSec.cOverA) && isNum(q.reqPerSec.cOverB), `ratios at ${q.connections}`);
    t.ok(isNum(q.addedP50Ms.reference) && isNum(q.addedP50Ms.sidecar), `added p50 at ${q.connections}`);
    t.ok(q.cOverBPerRound.length === 2 && q.cOverBPerRound.every(isNum), `c/b of each round at ${q.connections}`);
    t.ok(isNum(q.control.overB) && q.control.perRound.length === 2 && q.control.perRound.every(isNum), `A/A control b'/b at ${q.connections}`);
    // CPU per request is read from /proc: CI and this machine are Linux.
    if (process.platform === 'linux') {
      t.ok(q.cpu && [q.cpu.cOverB, q.cpu.controlOverB, q.cpu.raw.cOverB, q.cpu.raw.controlOverB].every(isNum), `CPU per request ratios at ${q.connections}`);
    }
  }
  if (process.platform === 'linux') {
    for (const r of report.results.filter((x: any) => x.scenario !== 'direct')) {
      t.ok(isNum(r.cpuUsPerRequest?.proxies) && r.cpuUsPerRequest.proxies > 0 && isNum(r.backgroundMsPerSecond), `${r.scenario}@${r.connections}: CPU per request and the other proxies' CPU read`);
    }
  }
  const rssNames = Object.keys(report.rssMiB);
  const proxies = ['reference-inbound', 'reference-outbound', 'control-inbound', 'control-outbound', 'sidecar-inbound', 'sidecar-outbound', 'attested-inbound', 'attested-outbound', 'fresh-outbound'];
  for (const name of proxies) t.ok(rssNames.includes(name), `RSS reported for ${name}`);
  // The 128 MiB target: the pair under test and both inbound sidecars (the attested one verifies d and e).
  const rssTargets = report.targets.filter((x: any) => x.name.startsWith('RSS under load')).map((x: any) => x.name.split(', ')[1].split(' ')[0]).sort();
  t.same(rssTargets, ['attested-inbound', 'sidecar-inbound', 'sidecar-outbound'], 'RSS targets for the pair under test and the attested inbound');
  for (const [name, v] of Object.entries<any>(report.rssMiB)) {
    t.ok(v.underLoad > 0 && v.idle > 0, `${name}: RSS sampled`);
  }
  // Sidecars only (the reference proxies have no /metrics): what their highest RSS was made of.
  t.same(Object.keys(report.rssPeak).sort(), ['attested-inbound', 'attested-outbound', 'fresh-outbound', 'sidecar-inbound', 'sidecar-outbound'], 'peaks explained for every sidecar');
  for (const [name, b] of Object.entries<any>(report.rssPeak)) {
    t.ok(b.v8TotalMiB > 0 && b.v8.new > 0 && b.fileMiB > 0 && b.anonMiB > b.v8TotalMiB / 2, `${name}: ${b.rssMiB} MiB explained`);
    t.ok(b.rssMiB <= report.rssMiB[name].underLoad + 1, `${name}: explained at a sample no higher than the maximum`);
  }
  t.equal(report.connectionCost.length, 4, 'new-connection cost: both listeners, with and without a session offered');
  for (const c of report.connectionCost) t.ok(isNum(c.medianMs) && c.medianMs > 0 && c.connections > 0, `${c.listener}/${c.sessionOffered}: measured`);
  t.ok(report.targets.length >= 4, 'targets evaluated');
  for (const target of report.targets) t.type(target.pass, 'boolean', `target '${target.name}' has a verdict`);
  t.equal(report.errors, 0);
  t.equal(report.non2xx, 0);
  t.equal(report.ok, true);
});

t.test('a bad option fails with a non-zero exit and nothing on stdout', async (t) => {
  const out = await runBench(['--no-such-option']);
  t.not(out.code, 0);
  t.equal(out.stdout, '');
  t.match(out.stderr, /no-such-option|Unknown option/);
});

t.test('--settle takes 0 (no settle runs) but not a negative number', async (t) => {
  const out = await runBench(['--settle=-1']);
  t.not(out.code, 0);
  t.equal(out.stdout, '');
  t.match(out.stderr, /--settle must be 0 or a positive number/);
});
