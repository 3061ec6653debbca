/**
 * `attest-sidecar run --config FILE` as separate processes with the `files` identity source:
 * an agent sidecar and a service sidecar, certificate rotation by atomic file replacement, and
 * config errors that stop the process before it listens.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { EchoApp, viaProxy } from '../helpers/mesh.js';
import { binPath, repoRoot } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const TD = 'files.test';
const dir = mkdtempSync(path.join(tmpdir(), 'attest-run-'));
const ca = await DevCa.create({ trustDomain: TD });
const app = new EchoApp();
const appUrl = await app.start();
const procs: ChildProcess[] = [];
t.teardown(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

async function writeSvid(name: string, id: string): Promise<string> {
  const s = await ca.issueX509Svid(id, { ttlSeconds: 3600 });
  // Atomic replacement, the way cert managers and spiffe-helper write files.
  for (const [file, text] of [[`${name}.pem`, s.certChainPem], [`${name}-key.pem`, s.keyPem]] as const) {
    writeFileSync(path.join(dir, `${file}.tmp`), text, { mode: 0o600 });
    renameSync(path.join(dir, `${file}.tmp`), path.join(dir, file));
  }
  return s.svid.certificates[0]!.serialNumber;
}

/** Runs the executable itself, as the container image and npm's bin link do. */
function start(configFile: string): ChildProcess {
  const p = spawn(binPath, ['run', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Read stderr (a full pipe would block the child) and keep its tail for failure messages.
  let tail = '';
  p.stderr!.on('data', (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-2000);
  });
  stderrTails.set(p, () => `${path.basename(configFile)} (exit ${p.exitCode ?? p.signalCode ?? 'none'}): ${tail.trim() || '(no stderr)'}`);
  procs.push(p);
  return p;
}
const stderrTails = new Map<ChildProcess, () => string>();

async function until<T>(f: () => Promise<T | undefined>, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  const children = [...stderrTails.values()].map((tail) => tail()).join('\n');
  throw new Error(`timed out waiting for ${what}\n${children}`);
}

const serverId = `spiffe://${TD}/service`;
const agentId = `spiffe://${TD}/agent`;
writeFileSync(path.join(dir, 'bundle.pem'), ca.bundle().toPem());
await writeSvid('server', serverId);
const firstAgentSerial = await writeSvid('agent', agentId);
writeFileSync(path.join(dir, 'policy.yaml'), `agent_policy:\n  name: agent\n  spiffe_id: ${agentId}\n  allowed_actions: [things.read]\n`);
const [inPort, adminIn, outPort, adminOut] = [await freePort(), await freePort(), await freePort(), await freePort()];
writeFileSync(
  path.join(dir, 'server.yaml'),
  `identity: { source: files, cert: server.pem, key: server-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:${inPort}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
policy: policy.yaml
admin: { listen: 127.0.0.1:${adminIn} }
state_dir: state-server
log: { level: warn }
`,
);
writeFileSync(
  path.join(dir, 'agent.yaml'),
  `identity: { source: files, cert: agent.pem, key: agent-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${outPort}
  routes:
    - { name: things, upstream: "https://127.0.0.1:${inPort}", server_id: "${serverId}" }
admin: { listen: 127.0.0.1:${adminOut} }
state_dir: state-agent
log: { level: warn }
`,
);

t.test('two sidecar processes from config files', async (t) => {
  start(path.join(dir, 'server.yaml'));
  start(path.join(dir, 'agent.yaml'));
  for (const port of [adminIn, adminOut]) {
    await until(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), `readiness on ${port}`);
  }
  const r = await viaProxy(`http://127.0.0.1:${outPort}`, 'GET', 'http://things/things/42');
  t.equal(r.status, 200, r.body);
  t.equal(JSON.parse(r.body).headers['x-spiffe-id'], agentId);
  const denied = await viaProxy(`http://127.0.0.1:${outPort}`, 'GET', 'http://things/other');
  t.same(JSON.parse(denied.body), { error: 'No action mapped for GET /other' });
  // The executable's own Node flags (its `#!/usr/bin/env -S node ...` line) reach the process.
  if (process.platform === 'linux') {
    for (const p of procs.slice(-2)) {
      const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
      t.ok(argv.includes('--min-semi-space-size=8') && argv.includes('--max-semi-space-size=8'), `node started with the fixed young generation: ${argv.slice(0, 4).join(' ')}`);
    }
  }
});

t.test('an atomically replaced certificate is picked up without restart', async (t) => {
  const status = async () => (await (await fetch(`http://127.0.0.1:${adminOut}/status`)).json()) as { svid: { serial: string } };
  t.equal((await status()).svid.serial, firstAgentSerial);
  const next = await writeSvid('agent', agentId);
  await until(async () => ((await status()).svid.serial === next ? true : undefined), 'the new serial');
  const r = await viaProxy(`http://127.0.0.1:${outPort}`, 'GET', 'http://things/things/1');
  t.equal(r.status, 200);
});

t.test('config errors name the file, position and key, and exit non-zero before listening', async (t) => {
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    `identity: { source: files, cert: agent.pem, key: agent-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${await freePort()}
  routes:
    - { name: things, upstream: "https://127.0.0.1:1", server_id: "spiffe://Bad/../x" }
`,
  );
  const r = spawnSync(process.execPath, [binPath, 'run', '--config', bad], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5:\\d+`));
  t.match(r.stderr, /outbound\.routes\[0\]\.server_id/);
  const missing = spawnSync(process.execPath, [binPath, 'run', '--config', path.join(dir, 'nope.yaml')], { encoding: 'utf8', timeout: 60_000 });
  t.equal(missing.status, 1);
  t.match(missing.stderr, /nope\.yaml/);
});

t.test('check-policy: OK summary, or file:line:column problems and exit 1', async (t) => {
  const ok = spawnSync(process.execPath, [binPath, 'check-policy', path.join(repoRoot, 'fixtures/policies/transaction-approver.yaml')], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /^OK .*transaction-approver\.yaml: 1 agent/);
  const bad = spawnSync(process.execPath, [binPath, 'check-policy', path.join(repoRoot, 'fixtures/policies/typos.yaml')], { encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /typos\.yaml:5:5: agents\[0\]\.alowed_actions: unknown key 'alowed_actions' \(did you mean 'allowed_actions'\?\)/);
  t.match(bad.stderr, /typos\.yaml:7:16: agents\[1\]\.spiffe_id: invalid SPIFFE ID/);
});
