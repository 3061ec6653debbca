/**
 * The durability promise under kill -9 (docs/audit.md): a record is in the kernel before the
 * sidecar handles any later event, so once the sidecar has answered a later request, a SIGKILL
 * loses none of the earlier records. Runs the real executable: N requests through its outbound
 * proxy (refused routes and a route whose upstream is down), each answered, one more request,
 * then SIGKILL: all N records must be in the file (the last request's may or may not be: its
 * response and its record are written in the same turn) and the chain intact.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { verifyAuditFile } from '../../src/audit/verify.js';
import { viaProxy } from '../helpers/mesh.js';
import { binPath } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const TD = 'kill.test';

t.test('kill -9 after N answered requests: all N records are in the file', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-kill-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const s = await ca.issueX509Svid(`spiffe://${TD}/agent`, { ttlSeconds: 3600 });
  writeFileSync(path.join(dir, 'agent.pem'), s.certChainPem);
  writeFileSync(path.join(dir, 'agent-key.pem'), s.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'bundle.pem'), ca.bundle().toPem());
  const [outPort, adminPort, downPort] = [await freePort(), await freePort(), await freePort()];
  const audit = path.join(dir, 'audit.log');
  const config = path.join(dir, 'agent.yaml');
  writeFileSync(
    config,
    `name: killed
identity: { source: files, cert: agent.pem, key: agent-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${outPort}
  routes:
    - { name: down, upstream: "https://127.0.0.1:${downPort}", server_id: "spiffe://${TD}/service" }
admin: { listen: 127.0.0.1:${adminPort} }
state_dir: state
log: { level: warn, audit: ${audit} }
`,
  );
  const child = spawn(binPath, ['run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const end = Date.now() + 30_000;
  for (;;) {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (Date.now() > end || child.exitCode !== null) throw new Error(`sidecar not ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const n = 60;
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) {
    const host = i % 2 === 0 ? 'nowhere' : 'down';
    const r = await viaProxy(`http://127.0.0.1:${outPort}`, 'GET', `http://${host}/item/${i}`);
    statuses.push(r.status);
  }
  // One more answered request: the sidecar has handled a later event than all N decisions.
  const last = await viaProxy(`http://127.0.0.1:${outPort}`, 'GET', 'http://nowhere/last');
  // Kill at once, no grace for the sidecar.
  child.kill('SIGKILL');
  t.equal(last.status, 404);
  t.equal(await exited, 'SIGKILL');
  t.equal(statuses.length, n);
  t.ok(statuses.every((st) => st >= 400), `refused and failed requests, every one answered (${[...new Set(statuses)].join(', ')})`);

  const records = readFileSync(audit, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; route?: string; path?: string; status?: number });
  const decided = records.filter((r) => r.type === 'outbound_decision').map((r) => `${r.route} ${r.status}`);
  const answered = statuses.map((st, i) => `${i % 2 === 0 ? 'nowhere' : 'down'} ${st}`);
  t.same(decided.slice(0, n), answered, `all ${n} answered requests are audited, in order`);
  t.ok(decided.length === n || (decided.length === n + 1 && decided[n] === 'nowhere 404'), 'the last request: audited or not, nothing else');
  const report = await verifyAuditFile(audit);
  t.ok(report.ok, JSON.stringify(report.errors));
  t.equal(report.firstSeq, 0, 'from its genesis record');
});
