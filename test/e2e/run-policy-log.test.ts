/**
 * `attest-sidecar run`: a policy edit that does not compile is logged with file:line:column
 * (one JSON line per problem on stdout) and the running policy stays in force.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { EchoApp } from '../helpers/mesh.js';
import { binPath } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const TD = 'reload.test';
const dir = mkdtempSync(path.join(tmpdir(), 'attest-run-reload-'));
const app = new EchoApp();
const appUrl = await app.start();
t.teardown(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

t.test('a rejected policy reload is logged with file:line:column', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const s = await ca.issueX509Svid(`spiffe://${TD}/service`, { ttlSeconds: 3600 });
  writeFileSync(path.join(dir, 'server.pem'), s.certChainPem);
  writeFileSync(path.join(dir, 'server-key.pem'), s.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'bundle.pem'), ca.bundle().toPem());
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(policy, `agent_policy:\n  name: agent\n  spiffe_id: spiffe://${TD}/agent\n  allowed_actions: [things.read]\n`);
  const config = path.join(dir, 'server.yaml');
  writeFileSync(
    config,
    `identity: { source: files, cert: server.pem, key: server-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:${await freePort()}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
policy: policy.yaml
admin: { listen: 127.0.0.1:${await freePort()} }
state_dir: state
log: { level: info }
`,
  );

  const child = spawn(binPath, ['run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const logs: Record<string, unknown>[] = [];
  let partial = '';
  let stderr = '';
  const waiters: (() => void)[] = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON: not a log line
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const until = (what: string, pred: (l: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line: ${what}\nstderr: ${stderr}\nlogs: ${JSON.stringify(logs.slice(-10))}`)), 30_000);
      const check = () => {
        const hit = logs.find(pred);
        if (hit) {
          clearTimeout(timer);
          resolve(hit);
        } else if (child.exitCode !== null) {
          clearTimeout(timer);
          reject(new Error(`sidecar exited ${child.exitCode}: ${stderr}`));
        } else waiters.push(check);
      };
      check();
    });

  const loaded = await until('policy loaded', (l) => l.msg === 'policy loaded');
  replace(policy, `agent_policy:\n  name: agent\n  spiffe_id: spiffe://${TD}/agent\n  alowed_actions: [things.read]\n`);
  const rejected = await until('policy reload rejected', (l) => typeof l.msg === 'string' && l.msg.startsWith('policy reload rejected'));
  t.match(rejected, {
    level: 50,
    reason: 'policy_invalid',
    file: policy,
    line: 4,
    column: 3,
    // `field`, not `key`: the logger redacts any `key` (key material) to [redacted].
    field: 'agent_policy.alowed_actions',
    version: loaded.version,
  });
  t.match(rejected.msg, `${policy}:4:3: agent_policy.alowed_actions: unknown key 'alowed_actions'`);
});
