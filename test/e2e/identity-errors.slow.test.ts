/**
 * Identity mistakes that waiting cannot fix, seen from outside the process: `attest-sidecar run`
 * refuses bad identity files at start with one clear line and a non-zero exit; a Workload API
 * socket that answers Unimplemented (a SPIRE server socket given instead of the agent's) is named
 * in /readyz, /status and the log. Several SVIDs without a hint draw a warning.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { DevIssuer } from '../../src/dev/issuer.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import { makeCa, makeLeaf } from '../helpers/certs.js';
import { binPath } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { tempSocketDir } from '../helpers/workload-api.js';

const TD = 'errors.test';
const dir = mkdtempSync(path.join(tmpdir(), 'attest-id-errors-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = await DevCa.create({ trustDomain: TD });
const good = await ca.issueX509Svid(`spiffe://${TD}/agent`, { ttlSeconds: 3600 });
const other = await ca.issueX509Svid(`spiffe://${TD}/other`, { ttlSeconds: 3600 });
// A certificate without a SPIFFE ID (a plain TLS server certificate).
const plainCa = await makeCa({ name: 'Plain CA', uris: [] });
const plain = await makeLeaf(plainCa, { name: 'www.example.com', uris: [] });

const write = (name: string, text: string) => {
  writeFileSync(path.join(dir, name), text, { mode: 0o600 });
  return name;
};
write('good.pem', good.certChainPem);
write('good-key.pem', good.keyPem);
write('other-key.pem', other.keyPem);
write('bundle.pem', ca.bundle().toPem());
write('leaf-bundle.pem', good.certChainPem.split(/(?<=-----END CERTIFICATE-----\n?)/)[0]!);
write('plain.pem', plain.pem);
write('plain-key.pem', plain.keyPem);

interface Exit {
  code: number | null;
  stderr: string;
  stdout: string;
}

/** Runs `attest-sidecar run --config` to its exit (bounded, generously, so a hang fails). */
function runToExit(configName: string): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const p = spawn(binPath, ['run', '--config', path.join(dir, configName)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const guard = setTimeout(() => p.kill('SIGKILL'), 90_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stderr, stdout });
    });
  });
}

async function filesConfig(name: string, identity: string): Promise<string> {
  return write(
    `${name}.yaml`,
    `identity: { source: files, ${identity} }
outbound:
  listen: 127.0.0.1:${await freePort()}
  routes:
    - { name: things, upstream: "https://127.0.0.1:1", server_id: "spiffe://${TD}/service" }
admin: { listen: 127.0.0.1:${await freePort()} }
state_dir: state-${name}
log: { level: warn }
`,
  );
}

const CASES: { name: string; identity: string; error: RegExp }[] = [
  { name: 'wrong-folder', identity: 'cert: nowhere/good.pem, key: good-key.pem, bundle: bundle.pem', error: /folder .*nowhere does not exist/ },
  { name: 'missing-file', identity: 'cert: absent.pem, key: good-key.pem, bundle: bundle.pem, startup_timeout: 1s', error: /no identity within 1000 ms: cannot read .*absent\.pem/ },
  { name: 'not-spiffe', identity: 'cert: plain.pem, key: plain-key.pem, bundle: bundle.pem', error: /plain\.pem .*no URI SAN/ },
  { name: 'key-mismatch', identity: 'cert: good.pem, key: other-key.pem, bundle: bundle.pem', error: /good\.pem with key .*other-key\.pem: .*(key|match)/i },
  { name: 'leaf-bundle', identity: 'cert: good.pem, key: good-key.pem, bundle: leaf-bundle.pem', error: /bundle file .*leaf-bundle\.pem holds a certificate that is not a CA/ },
];

for (const c of CASES) {
  t.test(`files identity: ${c.name} is refused at start with one clear line`, async (t) => {
    const out = await runToExit(await filesConfig(c.name, c.identity));
    t.equal(out.code, 1, `exit status 1 (stderr: ${out.stderr.trim()})`);
    const lines = out.stderr.trim().split('\n');
    t.equal(lines.length, 1, 'one line on stderr');
    t.match(lines[0], /^attest-sidecar: files identity refused: /);
    t.match(lines[0], c.error);
  });
}

t.test('the good files start (the cases above differ from it by one file)', async (t) => {
  const config = await filesConfig('good', 'cert: good.pem, key: good-key.pem, bundle: bundle.pem');
  const admin = /admin: \{ listen: 127\.0\.0\.1:(\d+) \}/.exec((await import('node:fs')).readFileSync(path.join(dir, config), 'utf8'))![1];
  const p = spawn(binPath, ['run', '--config', path.join(dir, config)], { stdio: 'ignore' });
  t.teardown(() => void p.kill('SIGKILL'));
  const body = await poll(`http://127.0.0.1:${admin}/readyz`, (s) => s === 200, p);
  t.equal(body.ready, true);
});

function capturingLogger() {
  const lines: { level: string; obj: object; msg: string | undefined }[] = [];
  const at = (level: string) => (obj: object | string, msg?: string) => void lines.push({ level, obj: typeof obj === 'string' ? {} : obj, msg: typeof obj === 'string' ? obj : msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Polls a URL until its status and JSON body satisfy `ok`; returns the body. */
async function poll(url: string, ok: (status: number, body: Record<string, any>) => boolean, proc: ChildProcess): Promise<Record<string, any>> {
  const end = Date.now() + 60_000;
  let last = 'no answer';
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error(`sidecar exited (${proc.exitCode})`);
    try {
      const r = await fetch(url);
      const body = (await r.json()) as Record<string, any>;
      if (ok(r.status, body)) return body;
      last = `${r.status} ${JSON.stringify(body)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out polling ${url} (last: ${last})`);
}

t.test('a Workload API socket answering Unimplemented is named in /readyz, /status and the log', async (t) => {
  // A real gRPC server with no services: it answers every call with UNIMPLEMENTED, as a SPIRE
  // server socket does for the Workload API.
  const sock = tempSocketDir('wl-unimpl-');
  t.teardown(sock.cleanup);
  const server = new grpc.Server();
  const socketPath = path.join(sock.dir, 'server.sock');
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  t.teardown(() => server.forceShutdown());
  const admin = await freePort();
  const config = write(
    'unimplemented.yaml',
    `identity: { source: workload-api, socket: "unix://${socketPath}", startup_timeout: 1s }
outbound:
  listen: 127.0.0.1:${await freePort()}
  routes:
    - { name: things, upstream: "https://127.0.0.1:1", server_id: "spiffe://${TD}/service" }
admin: { listen: 127.0.0.1:${admin} }
state_dir: state-unimplemented
log: { level: info }
`,
  );
  const p = spawn(binPath, ['run', '--config', path.join(dir, config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void p.kill('SIGKILL'));
  let log = '';
  p.stdout!.on('data', (d: Buffer) => (log += d.toString('utf8')));
  p.stderr!.on('data', (d: Buffer) => (log += d.toString('utf8')));

  // The check appears once the stream has failed.
  const ready = await poll(`http://127.0.0.1:${admin}/readyz`, (s, body) => s === 503 && body.checks?.identity_source !== undefined, p);
  const check = ready.checks.identity_source;
  t.equal(check?.ok, false, 'readiness fails on the identity source');
  t.match(check?.detail, /UNIMPLEMENTED.*SPIRE server socket/, `/readyz names it: ${check?.detail}`);
  const status = (await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as Record<string, any>;
  t.match(JSON.stringify(status), /unrecoverableError":"[^"]*UNIMPLEMENTED/, '/status names it');
  const line = log.split('\n').find((l) => /retrying cannot fix/.test(l));
  t.ok(line, 'a log line says it');
  t.match(line ?? '', /UNIMPLEMENTED/);
});

t.test('several SVIDs and no hint: a warning naming them', async (t) => {
  const sock = tempSocketDir('wl-multi-');
  t.teardown(sock.cleanup);
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: sock.dir, svidTtlSeconds: 600 });
  t.teardown(() => issuer.stop());
  // SPIRE serves several SVIDs in entry ID order: these IDs make "first" first.
  const { endpoint } = await issuer.registerWorkload(`spiffe://${TD}/first`, { entryId: 'entry-1', extraIdentities: [{ spiffeId: `spiffe://${TD}/second`, hint: 'second', entryId: 'entry-2' }] });
  const logger = capturingLogger();
  const unhinted = new WorkloadApiX509Source({ endpoint, logger }).start();
  t.teardown(() => unhinted.close());
  await unhinted.waitReady(30_000);
  const warnings = logger.lines.filter((l) => l.level === 'warn' && /no hint is configured/.test(l.msg ?? ''));
  t.equal(warnings.length, 1, 'one warning');
  t.same(warnings[0]?.obj, { svids: [`spiffe://${TD}/first`, `spiffe://${TD}/second`], using: `spiffe://${TD}/first` });

  const hinted = new WorkloadApiX509Source({ endpoint, logger: capturingLogger(), hint: 'second' }).start();
  t.teardown(() => hinted.close());
  t.equal((await hinted.waitReady(30_000)).svid.id.toString(), `spiffe://${TD}/second`, 'the hint picks its SVID');
});
