/**
 * go-spiffe v2.9.0 peers (test/go/spiffe-peers) and attest-sidecar processes on a real SPIRE
 * server and agent, both directions: a go-spiffe mTLS client calling the inbound sidecar, and a
 * go-spiffe mTLS server as the upstream of the agent sidecar's outbound route. Every workload is
 * named to the SPIRE agent by its binary (`unix:path`): the sidecars by their own node binaries,
 * the Go programs by theirs.
 */
import { readJsonLines } from '../helpers/json-lines.js';
import { copyFileSync, linkSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EchoApp, viaProxy } from '../helpers/mesh.js';
import { skipFor } from '../helpers/needs.js';
import { freePort } from '../helpers/ports.js';
import { getStatus, sidecarProcess, spireMissing, startSpire, until, type SidecarProcess } from '../helpers/spire.js';
import { SPIFFE_PEERS, SpiffeServer, buildGoPrograms, goProgramsMissing, runSpiffeClient, type PeerLine } from '../helpers/go-programs.js';

const TD = 'go-peers.test';
const id = (name: string) => `spiffe://${TD}/${name}`;
const ids = {
  service: id('service'),
  agent: id('agent/a'),
  goClient: id('go-client'),
  stranger: id('go-stranger'),
  goServer: id('go-server'),
};

const skip = skipFor(spireMissing(), goProgramsMissing(SPIFFE_PEERS));
if (skip) {
  t.skip(skip, () => {});
} else {
  await main();
}

async function main(): Promise<void> {
  t.setTimeout(900_000);
  const started = Date.now();
  const { bins, built, buildMs } = await buildGoPrograms(SPIFFE_PEERS);
  t.comment(built ? `built the go-spiffe peers (cold) in ${buildMs} ms` : `go-spiffe peers from the cache (${path.dirname(bins['spiffe-client']!)})`);

  const spire = await startSpire(t, { trustDomain: TD });
  const socket = `unix://${spire.workloadSocket}`;
  const clientBin = realpathSync(bins['spiffe-client']!);
  const serverBin = realpathSync(bins['spiffe-server']!);
  // Another identity for the same program: a second path to it.
  const strangerBin = path.join(spire.dir, 'bin', 'spiffe-stranger');
  mkdirSync(path.dirname(strangerBin), { recursive: true });
  try {
    linkSync(clientBin, strangerBin);
  } catch {
    copyFileSync(clientBin, strangerBin);
  }
  const service = sidecarProcess(t, spire, 'service');
  const agent = sidecarProcess(t, spire, 'agent-a');
  const registered = Date.now();
  for (const [spiffeId, bin] of [
    [ids.service, service.node],
    [ids.agent, agent.node],
    [ids.goClient, clientBin],
    [ids.stranger, strangerBin],
    [ids.goServer, serverBin],
  ] as const) {
    await spire.createEntry({ spiffeId, selectors: [`unix:path:${bin}`], x509SvidTtlSeconds: 60 });
  }
  const created = Date.now();
  t.comment(`spire-server entry create, 5 entries: ${created - registered} ms`);

  const app = new EchoApp();
  const appUrl = await app.start();
  t.teardown(() => app.close());

  // Two go-spiffe servers with the same identity: one authorizes the agent sidecar, one someone else.
  const goServer = await SpiffeServer.start(serverBin, ['-authorize-id', ids.agent], socket);
  t.teardown(() => goServer.stop());
  t.comment(`entries created to the go-spiffe server listening with its SVID: ${Date.now() - created} ms`);
  // No assertion out here: tap ends the root test (running the teardowns) after a top-level assertion.
  if (goServer.spiffeId !== ids.goServer) throw new Error(`the go-spiffe server holds ${goServer.spiffeId}, not ${ids.goServer}`);
  const refusingServer = await SpiffeServer.start(serverBin, ['-authorize-id', id('someone-else')], socket);
  t.teardown(() => refusingServer.stop());

  const dir = spire.dir;
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
  startSidecar(service, socket, ports.adminIn, `inbound:
  listen: 127.0.0.1:${ports.inbound}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
    - { method: POST, path: /things, action: things.write }
policy: ${path.join(dir, 'policy.yaml')}
`);
  startSidecar(agent, socket, ports.adminOut, `outbound:
  listen: 127.0.0.1:${ports.outbound}
  caller_token_file: ${path.join(dir, 'caller-token')}
  routes:
    - { name: go, upstream: "https://${goServer.address}", server_id: "${ids.goServer}" }
    - { name: go-refusing, upstream: "https://${refusingServer.address}", server_id: "${ids.goServer}" }
`);
  for (const [sc, port] of [[service, ports.adminIn], [agent, ports.adminOut]] as const) {
    const state = await until(
      async () => (sc.exited ? 'exited' : (await getStatus(`http://127.0.0.1:${port}/readyz`))?.status === 200 ? 'ready' : undefined),
      `${sc.name} ready`,
      90_000,
      () => sc.stderr,
    );
    if (state !== 'ready') throw new Error(sc.exited);
  }
  t.comment(`entries created to both sidecar processes ready: ${Date.now() - created} ms`);
  const agentAudit = auditPath(agent);
  t.comment(`setup (build, SPIRE, 2 go-spiffe servers, 2 sidecars) took ${Date.now() - started} ms`);
  const inbound = `https://127.0.0.1:${ports.inbound}`;

  t.test('a go-spiffe client: allowed, denied, and the app sees its ID in XFCC and x-spiffe-id', async (t) => {
    const r = await runSpiffeClient(clientBin, ['https', '-server-id', ids.service, `${inbound}/things/7`, `POST ${inbound}/things`], socket);
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
    const r = await runSpiffeClient(strangerBin, ['https', '-server-id', ids.service, `${inbound}/things/7`], socket);
    t.equal(r.code, 0, r.stderr);
    t.match(r.lines[0], { type: 'svid', spiffe_id: ids.stranger });
    t.match(r.lines[1], { type: 'response', status: 403 });
    t.same(JSON.parse(String(r.lines[1]!.body)), { error: 'Unknown agent' });
  });

  t.test('the go-spiffe client refuses a sidecar that is not the ID it expects', async (t) => {
    const before = app.seen.length;
    const r = await runSpiffeClient(clientBin, ['https', '-server-id', id('not-the-service'), `${inbound}/things/7`], socket);
    t.equal(r.code, 3, 'exit code 3: handshake failed');
    const failure = r.lines.find((l) => l.type === 'error') as PeerLine;
    t.match(failure, { kind: 'handshake' });
    t.match(String(failure.error), ids.service, 'go-spiffe names the ID it got');
    t.equal(app.seen.length, before, 'nothing reached the app');
  });

  t.test('JWT-SVIDs: the go-spiffe client fetches one, another go-spiffe workload validates it', async (t) => {
    const fetched = await runSpiffeClient(clientBin, ['jwt-fetch', '-audience', 'go-peers-audience'], socket);
    t.equal(fetched.code, 0, fetched.stderr);
    const svid = fetched.lines[0]!;
    t.match(svid, { type: 'jwt_svid', spiffe_id: ids.goClient, audience: ['go-peers-audience'] });
    const token = String(svid.token);
    for (const via of ['bundles', 'api']) {
      const valid = await runSpiffeClient(strangerBin, ['jwt-validate', '-audience', 'go-peers-audience', '-via', via, token], socket);
      t.equal(valid.code, 0, `${via}: ${JSON.stringify(valid.lines)}`);
      t.match(valid.lines[0], { type: 'jwt_valid', spiffe_id: ids.goClient }, via);
      const wrong = await runSpiffeClient(strangerBin, ['jwt-validate', '-audience', 'another-audience', '-via', via, token], socket);
      t.equal(wrong.code, 6, `${via}: another audience is refused`);
      t.match(wrong.lines[0], { type: 'error', kind: 'jwt_invalid' });
    }
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
    t.same(JSON.parse(r.body), { error: "Upstream TLS failure: the upstream sent the TLS alert 'bad certificate'" });
    t.match(refusingServer.stderr(), `unexpected ID \\"${ids.agent}\\"`, 'the go-spiffe server refused the agent sidecar by its ID');
    const record = await until(() => readJsonLines(agentAudit).find((rec) => rec.route === 'go-refusing'), 'the refused request in the audit log');
    t.match(record, { decision: 'error', reason: 'upstream_tls_error', status: 502 });
  });

  t.test('the go-spiffe server exits 0 on SIGTERM', async (t) => {
    t.equal(await goServer.stop(), 0);
  });
}

function auditPath(sc: SidecarProcess): string {
  return path.join(sc.dir, 'audit.log');
}

/** Starts `sc` on SPIRE's Workload API with its admin listener on `adminPort` and `body` (inbound or outbound). */
function startSidecar(sc: SidecarProcess, socket: string, adminPort: number, body: string): void {
  sc.start(`name: ${sc.name}
identity: { source: workload-api, socket: "${socket}" }
${body}admin: { listen: 127.0.0.1:${adminPort} }
state_dir: state
log: { level: warn, audit: ${auditPath(sc)} }
`);
}

