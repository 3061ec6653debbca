/**
 * `attest-sidecar dev` (what `npm start` runs) as a user sees it: the real process driven with
 * the curl commands it prints. With --free-ports, so that it never collides with a running
 * `npm start` on the documented ports: the addresses come from the banner.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { binPath, repoRoot } from '../helpers/paths.js';

// The dev mesh's durable state (revocations, ledgers, admin token) in a private temp dir; the
// kill commands find the token through the same variable.
const stateDir = mkdtempSync(path.join(tmpdir(), 'attest-dev-state-'));
const env = { ...process.env, ATTEST_SIDECAR_DEV_STATE: stateDir };
t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
const proc = spawn(process.execPath, [binPath, 'dev', '--free-ports', '--svid-ttl', '20s', '--log-level', 'warn'], {
  cwd: repoRoot,
  env,
  stdio: ['ignore', 'pipe', 'pipe'],
});
let out = '';
let err = '';
proc.stdout.on('data', (c: Buffer) => (out += c));
proc.stderr.on('data', (c: Buffer) => (err += c));
const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
t.teardown(() => {
  if (proc.exitCode === null) proc.kill('SIGKILL');
});

await new Promise<void>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`dev mesh did not start:\n${out}\n${err}`)), 30_000);
  const check = () => {
    if (out.includes('Press Ctrl-C to stop.')) {
      clearTimeout(timer);
      resolve();
    }
  };
  proc.stdout.on('data', check);
  proc.on('exit', () => reject(new Error(`dev mesh exited early:\n${out}\n${err}`)));
});

/** The banner's addresses of one sidecar: `name  SPIFFE_ID`, then a line of `kind http://host:port` parts. */
function addressOf(name: string, kind: 'outbound' | 'admin'): string {
  const m = new RegExp(`^  ${name} +spiffe://\\S+\\n[^\\n]*\\b${kind} http://(127\\.0\\.0\\.1:\\d+)`, 'm').exec(out);
  if (!m) throw new Error(`no ${kind} address of ${name} in the banner:\n${out}`);
  return m[1]!;
}
const orchestratorProxy = `http://${addressOf('orchestrator', 'outbound')}`;
const harnessWriterProxy = `http://${addressOf('harness-writer', 'outbound')}`;
const intruderProxy = `http://${addressOf('intruder', 'outbound')}`;
const admin = `http://${addressOf('control-plane', 'admin')}`;

function curl(args: string[]): { code: string; body: string } {
  const r = spawnSync('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  const code = lines.pop() ?? '';
  return { code, body: lines.join('\n') };
}

t.test('the banner names every sidecar and the commands to try', async (t) => {
  t.match(out, /DEVELOPMENT ONLY/);
  t.match(out, /control-plane +spiffe:\/\/agent-mesh\.local\/ns\/agent-swarm\/sa\/control-plane/);
  t.ok(out.includes(`curl -x ${orchestratorProxy} http://control-plane/agents`));
  t.ok(out.includes(`curl -x ${orchestratorProxy} -X POST http://control-plane/fuzzer/harness`));
  t.ok(out.includes(`sa/orchestrator --admin ${admin}`), 'the kill commands name the admin address, which is not the default');
  for (const port of [15000, 15001, 15002, 15003, 15443, 8080]) t.notOk(out.includes(`127.0.0.1:${port}`), `nothing on the fixed port ${port}`);
});

t.test('allowed call (200)', async (t) => {
  const r = curl(['-x', orchestratorProxy, 'http://control-plane/agents']);
  t.equal(r.code, '200', r.body);
  t.equal(JSON.parse(r.body).caller, 'spiffe://agent-mesh.local/ns/agent-swarm/sa/orchestrator');
});

t.test('denied action (403, not permitted)', async (t) => {
  const r = curl(['-x', orchestratorProxy, '-X', 'POST', 'http://control-plane/fuzzer/harness']);
  t.equal(r.code, '403');
  t.same(JSON.parse(r.body), { error: "Action 'fuzzer.write_harness' not permitted" });
});

t.test('the harness writer may write harnesses', async (t) => {
  const r = curl(['-x', harnessWriterProxy, '-X', 'POST', '-H', 'content-type: application/json', '-d', '{"target":"parse"}', 'http://control-plane/fuzzer/harness']);
  t.equal(r.code, '201', r.body);
  const s = curl(['-x', harnessWriterProxy, 'http://control-plane/fuzzer/source/parser.c']);
  t.equal(s.code, '200', s.body);
});

t.test('unknown agent (403)', async (t) => {
  const r = curl(['-x', intruderProxy, 'http://control-plane/agents']);
  t.equal(r.code, '403');
  t.same(JSON.parse(r.body), { error: 'Unknown agent' });
});

t.test('admin status and readiness of the control plane', async (t) => {
  const ready = curl([`${admin}/readyz`]);
  t.equal(ready.code, '200', ready.body);
  const status = JSON.parse(curl([`${admin}/status`]).body);
  t.equal(status.spiffe_id, 'spiffe://agent-mesh.local/ns/agent-swarm/sa/control-plane');
  t.same(status.trust_domains, ['agent-mesh.local']);
  const attested = status.inbound.peers.filter((p: { attestation?: unknown }) => p.attestation);
  t.ok(attested.length >= 1, 'peers are listed with their verified (sim) evidence');
  t.equal(attested[0].attestation.type, 'sim');
  t.match(attested[0].attestation.claims.measurement, /^76f112b1/);
  const metrics = curl([`${admin}/metrics`]).body;
  t.match(metrics, /attest_sidecar_attestation_verifications_total\{type="sim",result="success",sidecar="control-plane"\} [1-9]/);
});

t.test('status page and budget in the dev mesh', async (t) => {
  const page = curl([`${admin}/`]);
  t.equal(page.code, '200');
  t.match(page.body, /<title>[^<]*attest-sidecar/i);
  const task = curl(['-x', orchestratorProxy, '-X', 'POST', '-H', 'content-type: application/json', '-d', '{"kind":"fuzz"}', 'http://control-plane/tasks']);
  t.equal(task.code, '201', task.body);
  const status = JSON.parse(curl([`${admin}/status`]).body);
  const budget = status.budgets.find((b: { agent: string }) => b.agent === 'orchestrator');
  t.match(budget, { spent_usd: 0.25, limit_usd: 5, period: 'daily' });
  t.ok(status.recent_denials.some((d: { reason: string }) => d.reason === 'action_not_permitted'), 'the earlier denial is listed');
});

t.test('kill switch from the CLI: kill, refused, restore', async (t) => {
  const orchestrator = 'spiffe://agent-mesh.local/ns/agent-swarm/sa/orchestrator';
  const cli = (...args: string[]) => spawnSync(process.execPath, [binPath, ...args, '--admin', admin], { env, encoding: 'utf8', timeout: 20_000 });
  const noToken = cli('kill', orchestrator, '--token-file', path.join(stateDir, 'missing'));
  t.equal(noToken.status, 2, 'an unreadable token file is a usage error');
  const forged = path.join(stateDir, 'forged-token');
  writeFileSync(forged, 'x'.repeat(43), { mode: 0o600 });
  const wrong = cli('kill', orchestrator, '--token-file', forged);
  t.equal(wrong.status, 1, 'a wrong token is refused');
  t.match(wrong.stderr, /refused \(401\)/);

  const killed = cli('kill', orchestrator, '--reason', 'test: compromised skill');
  t.equal(killed.status, 0, killed.stderr);
  t.match(killed.stdout, /revoked spiffe:\/\/agent-mesh\.local\/ns\/agent-swarm\/sa\/orchestrator/);
  const refused = curl(['-x', orchestratorProxy, 'http://control-plane/agents']);
  t.equal(refused.code, '403', 'the revoked agent is refused');
  t.same(JSON.parse(refused.body), { error: 'Agent revoked' });
  const other = curl(['-x', harnessWriterProxy, 'http://control-plane/fuzzer/source/parser.c']);
  t.equal(other.code, '200', 'other agents are unaffected');
  const status = JSON.parse(curl([`${admin}/status`]).body);
  t.equal(status.revocations.entries[0].spiffe_id, orchestrator);
  t.equal(status.revocations.entries[0].reason, 'test: compromised skill');

  const restored = cli('restore', orchestrator);
  t.equal(restored.status, 0, restored.stderr);
  t.equal(curl(['-x', orchestratorProxy, 'http://control-plane/agents']).code, '200', 'restored');
});

t.test('SIGTERM shuts down cleanly', async (t) => {
  proc.kill('SIGTERM');
  t.equal(await exited, 0);
});

t.test('the mesh stdout (four sidecars interleaved with logs) verifies with audit verify --mixed', async (t) => {
  await exited;
  const file = path.join(stateDir, 'stdout.log');
  writeFileSync(file, out);
  const r = spawnSync(process.execPath, [binPath, 'audit', 'verify', file, '--mixed', '--json'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as { ok: boolean; records: number; chains: { sidecar: string; firstSeq: number }[] };
  t.ok(report.ok);
  t.same(report.chains.map((c) => c.sidecar).sort(), ['control-plane', 'harness-writer', 'intruder', 'orchestrator'], 'one chain per sidecar');
  t.ok(report.chains.every((c) => c.firstSeq === 0), 'each from its genesis record');
  t.ok(report.records > 4, `${report.records} records`);
});
