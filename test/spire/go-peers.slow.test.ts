/**
 * go-spiffe v2.9.0 peers (test/go/spiffe-peers) against attest-sidecar processes, both directions:
 * a go-spiffe mTLS client calling the inbound sidecar, and a go-spiffe mTLS server as the upstream
 * of the agent sidecar's outbound route. Every workload gets its identity from the Workload API
 * by the path of its binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DevIssuer } from '../../src/dev/issuer.js';
import { EchoApp, viaProxy } from '../helpers/mesh.js';
import { skipFor } from '../helpers/needs.js';
import { binPath } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { tempSocketDir } from '../helpers/workload-api.js';
import { SPIFFE_PEERS, SpiffeServer, buildGoPrograms, goProgramsMissing, runSpiffeClient, type PeerLine } from '../helpers/go-programs.js';

/** Who issues identities: a workload (a binary path) registered under a SPIFFE ID gets it from `endpoint`. */
interface IdentityPlane {
  trustDomain: string;
  /** Registers `binary` as `spiffeId`; resolves with the Workload API endpoint it must use. */
  register(spiffeId: string, binary: string): Promise<string>;
  /** The node binary a sidecar process named `name` runs as. */
  nodeFor(name: string): Promise<string>;
}

async function devPlane(dir: string): Promise<IdentityPlane> {
  const issuer = await DevIssuer.start({ trustDomain: 'go-peers.test', socketDir: path.join(dir, 's'), svidTtlSeconds: 600 });
  t.teardown(() => issuer.stop());
  return {
    trustDomain: 'go-peers.test',
    register: async (id) => (await issuer.registerWorkload(id)).endpoint,
    nodeFor: async () => process.execPath,
  };
}

const skip = skipFor(goProgramsMissing(SPIFFE_PEERS));
if (skip) {
  t.skip(skip, () => {});
} else {
  await main();
}

async function main(): Promise<void> {
  t.setTimeout(900_000);
  const started = Date.now();
  const { bins, built, buildMs } = await buildGoPrograms(SPIFFE_PEERS);
  t.comment(built ? `built the go-spiffe peers in ${buildMs} ms` : `go-spiffe peers from the cache (${path.dirname(bins['spiffe-client']!)})`);

  const { dir, cleanup } = tempSocketDir('gp-');
  t.teardown(cleanup);
  const plane = await devPlane(dir);
  const id = (name: string) => `spiffe://${plane.trustDomain}/${name}`;
  const ids = {
    service: id('service'),
    agent: id('agent/a'),
    goClient: id('go-client'),
    stranger: id('go-stranger'),
    goServer: id('go-server'),
  };

  // Each identity is a binary path: the stranger is a copy of the same client.
  mkdirSync(path.join(dir, 'bin'));
  const clientBin = bins['spiffe-client']!;
  const strangerBin = path.join(dir, 'bin', 'spiffe-stranger');
  copyFileSync(clientBin, strangerBin);
  const serverBin = bins['spiffe-server']!;
  const clientSocket = await plane.register(ids.goClient, clientBin);
  const strangerSocket = await plane.register(ids.stranger, strangerBin);
  const serverSocket = await plane.register(ids.goServer, serverBin);

  const app = new EchoApp();
  const appUrl = await app.start();
  t.teardown(() => app.close());

  // Two go-spiffe servers with the same identity: one authorizes the agent sidecar, one someone else.
  const goServer = await SpiffeServer.start(serverBin, ['-authorize-id', ids.agent], serverSocket);
  t.teardown(() => goServer.stop());
  const refusingServer = await SpiffeServer.start(serverBin, ['-authorize-id', id('someone-else')], serverSocket);
  t.teardown(() => refusingServer.stop());

  const token = 'go-peers-caller-token-0123456789abcdef';
  writeFileSync(path.join(dir, 'caller-token'), `${token}\n`, { mode: 0o600 });
  writeFileSync(
    path.join(dir, 'policy.yaml'),
    `agents:
  - name: go-client
    spiffe_id: ${ids.goClient}
    allowed_actions: [things.read]
  - name: agent-a
    spiffe_id: ${ids.agent}
    allowed_actions: [things.read, things.write]
`,
  );
  const ports = { inbound: await freePort(), adminIn: await freePort(), outbound: await freePort(), adminOut: await freePort() };
  const service = await startSidecar(dir, 'service', await plane.nodeFor('service'), ports.adminIn, {
    socket: await plane.register(ids.service, await plane.nodeFor('service')),
    body: `inbound:
  listen: 127.0.0.1:${ports.inbound}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
    - { method: POST, path: /things, action: things.write }
policy: policy.yaml
`,
  });
  const agent = await startSidecar(dir, 'agent', await plane.nodeFor('agent'), ports.adminOut, {
    socket: await plane.register(ids.agent, await plane.nodeFor('agent')),
    body: `outbound:
  listen: 127.0.0.1:${ports.outbound}
  caller_token_file: caller-token
  routes:
    - { name: go, upstream: "https://${goServer.address}", server_id: "${ids.goServer}" }
    - { name: go-refusing, upstream: "https://${refusingServer.address}", server_id: "${ids.goServer}" }
`,
  });
  t.comment(`setup (build, issuer, 2 go servers, 2 sidecars) took ${Date.now() - started} ms`);
  const inbound = `https://127.0.0.1:${ports.inbound}`;

  t.test('a go-spiffe client: allowed, denied, and the app sees its ID in XFCC and x-spiffe-id', async (t) => {
    const r = await runSpiffeClient(clientBin, ['https', '-server-id', ids.service, `${inbound}/things/7`, `POST ${inbound}/things`], clientSocket);
    t.equal(r.code, 0, r.stderr);
    const [svid, allowed, denied] = r.lines;
    t.match(svid, { type: 'svid', spiffe_id: ids.goClient });
    t.match(allowed, { type: 'response', status: 200 });
    const seen = JSON.parse(String(allowed!.body)) as { url: string; headers: Record<string, string> };
    t.equal(seen.url, '/things/7');
    t.equal(seen.headers['x-spiffe-id'], ids.goClient);
    t.equal(seen.headers['x-forwarded-client-cert'], `By=${ids.service};Hash=${String(svid!.cert_sha256)};URI=${ids.goClient}`, "XFCC names the go peer's own leaf");
    t.match(denied, { type: 'response', status: 403 });
    t.same(JSON.parse(String(denied!.body)), { error: "Action 'things.write' not permitted" });
    t.equal(app.seen.filter((s) => s.url === '/things').length, 0, 'the denied request never reached the app');
  });

  t.test('a go-spiffe client the policy does not name is an unknown agent', async (t) => {
    const r = await runSpiffeClient(strangerBin, ['https', '-server-id', ids.service, `${inbound}/things/7`], strangerSocket);
    t.equal(r.code, 0, r.stderr);
    t.match(r.lines[0], { type: 'svid', spiffe_id: ids.stranger });
    t.match(r.lines[1], { type: 'response', status: 403 });
    t.same(JSON.parse(String(r.lines[1]!.body)), { error: 'Unknown agent' });
  });

  t.test('the go-spiffe client refuses a sidecar that is not the ID it expects', async (t) => {
    const before = app.seen.length;
    const r = await runSpiffeClient(clientBin, ['https', '-server-id', id('not-the-service'), `${inbound}/things/7`], clientSocket);
    t.equal(r.code, 3, 'exit code 3: handshake failed');
    const failure = r.lines.find((l) => l.type === 'error') as PeerLine;
    t.match(failure, { kind: 'handshake' });
    t.match(String(failure.error), ids.service, 'go-spiffe names the ID it got');
    t.equal(app.seen.length, before, 'nothing reached the app');
  });

  const proxyAuth = { 'proxy-authorization': `Basic ${Buffer.from(`agent:${token}`).toString('base64')}` };
  const viaAgent = (url: string, headers: Record<string, string> = {}) =>
    viaProxy(`http://127.0.0.1:${ports.outbound}`, 'GET', url, { headers: { ...proxyAuth, ...headers } });
  t.test('outbound: the go-spiffe server sees the agent sidecar, and no identity or attest-* field leaks', async (t) => {
    const smuggled = {
      'x-spiffe-id': id('admin'),
      'x-forwarded-client-cert': `By=${ids.goServer};URI=${id('admin')}`,
      x_spiffe_id: id('admin'),
      'X-Forwarded_Client-Cert': `URI=${id('admin')}`,
      'attest-evidence': 'forged',
      'attest-evidence-ref': 'forged',
      'attest-nonce': 'forged',
      'attest-challenge': 'evidence',
      'x-custom': 'kept',
    };
    const r = await viaAgent('http://go/echo?q=1', smuggled);
    t.equal(r.status, 200, r.body);
    const seen = JSON.parse(r.body) as { method: string; path: string; peer_id: string; headers: Record<string, string[]> };
    t.equal(seen.peer_id, ids.agent, "the Go server's TLS state names the agent sidecar");
    t.equal(seen.method, 'GET');
    t.equal(seen.path, '/echo?q=1');
    t.same(seen.headers['X-Custom'], ['kept'], 'ordinary fields pass');
    const names = Object.keys(seen.headers).map((n) => n.toLowerCase());
    for (const name of names) {
      t.notOk(name.startsWith('attest-'), `no attest-* field (${name})`);
      t.notOk(['x-spiffe-id', 'x-forwarded-client-cert', 'proxy-authorization', 'authorization'].includes(name.replaceAll('_', '-')), `no identity or credential field (${name})`);
    }
    t.notOk(r.body.includes(token), 'the caller token never reaches the upstream');
    t.notOk(r.body.includes(id('admin')), 'no caller-supplied identity reaches the upstream');
  });

  t.test('outbound: a go-spiffe server that authorizes another ID fails the request with the upstream handshake reason', async (t) => {
    const r = await viaAgent('http://go-refusing/echo');
    t.equal(r.status, 502, r.body);
    t.match(JSON.parse(r.body), { error: /^Upstream TLS failure: .*alert bad certificate/ });
    t.match(refusingServer.stderr(), `unexpected ID \\"${ids.agent}\\"`, 'the go-spiffe server refused the agent sidecar by its ID');
    const record = await until(() => readAudit(path.join(dir, 'agent-audit.log')).find((rec) => rec.route === 'go-refusing'), 'the refused request in the audit log');
    t.match(record, { decision: 'error', reason: 'upstream_tls_error', status: 502 });
  });

  t.test('the go-spiffe server exits 0 on SIGTERM', async (t) => {
    t.equal(await goServer.stop(), 0);
  });

  void service;
  void agent;
}

async function until<T>(f: () => T | undefined, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readAudit(file: string): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** `attest-sidecar run` as its own process (run by `node`), ready when its admin /readyz says so. */
async function startSidecar(dir: string, name: string, node: string, adminPort: number, cfg: { socket: string; body: string }): Promise<ChildProcess> {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
identity: { source: workload-api, socket: "${cfg.socket}" }
${cfg.body}admin: { listen: 127.0.0.1:${adminPort} }
state_dir: state-${name}
log: { level: warn, audit: ${path.join(dir, `${name}-audit.log`)} }
`,
  );
  const child = spawn(node, [binPath, 'run', '--config', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4000)));
  child.on('error', () => undefined);
  t.teardown(() => stopChild(child));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`sidecar ${name} exited: ${stderr}`);
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) return child;
    if (Date.now() > deadline) throw new Error(`sidecar ${name} not ready after 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
