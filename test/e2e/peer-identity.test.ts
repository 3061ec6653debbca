/**
 * Who may connect: SPIFFE verification of inbound peers and outbound servers, over real TLS,
 * cross-checked with the real curl and openssl clients.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Client } from 'undici';
import { DevCa } from '../../src/dev/ca.js';
import { TestMesh, TD, idOf, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start({ agents: ['orchestrator'] });
t.teardown(() => mesh.close());

const rawGet = (certPem: string, keyPem: string) => mesh.mtlsRequest(certPem, keyPem);

function run(cmd: string, args: string[], input?: string): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ status: code, stdout, stderr });
    });
    child.stdin?.end(input ?? '');
  });
}

function rejections(reason: string): number {
  return mesh.serverAudit.records.filter((r) => r.type === 'peer_rejected' && r.reason === reason).length;
}

t.test('control: a genuine SVID from our CA is accepted at the TLS layer', async (t) => {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const r = await rawGet(svid.certChainPem, svid.keyPem);
  t.equal(r.status, 200, 'accepted and allowed');
});

t.test('a certificate from a foreign CA that claims our trust domain is rejected', async (t) => {
  const foreign = await DevCa.create({ trustDomain: TD });
  const svid = await foreign.issueX509Svid(idOf('orchestrator'));
  await t.rejects(rawGet(svid.certChainPem, svid.keyPem), 'OpenSSL refuses the unknown root in the handshake');
});

t.test('a foreign-domain CA may not vouch for our trust domain, even when federated', async (t) => {
  const other = await DevCa.create({ trustDomain: 'partner.test' });
  // As in SPIRE, only an entry that federates with partner.test receives its bundle.
  mesh.issuer.setFederatesWith(idOf('control-plane'), ['partner.test']);
  mesh.issuer.setFederatedBundle('partner.test', other.bundle());
  // Wait until the inbound sidecar holds the federated bundle.
  for (let i = 0; i < 100 && !(mesh.server.status().trust_domains as string[]).includes('partner.test'); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await mesh.server.settled();
  t.same((mesh.server.status().trust_domains as string[]).sort(), ['agent-mesh.local', 'partner.test']);

  // partner.test's CA signs a certificate claiming agent-mesh.local: OpenSSL (union of bundles)
  // would accept the chain; the SPIFFE rule (bundle of the leaf's own trust domain) must not.
  const before = rejections('svid_untrusted');
  const forged = await other.issueCertificate({ uris: [idOf('orchestrator')] });
  await t.rejects(rawGet(forged.chainPem, forged.keyPem));
  t.equal(rejections('svid_untrusted'), before + 1, 'rejected by the SPIFFE verifier with svid_untrusted');

  // The same CA for its own domain is fine at the identity layer; the policy does not know it.
  const partner = await other.issueX509Svid('spiffe://partner.test/agent');
  const r = await rawGet(partner.certChainPem, partner.keyPem);
  t.equal(r.status, 403);
  t.same(JSON.parse(r.body), { error: 'Unknown agent' });
  mesh.issuer.setFederatedBundle('partner.test', undefined);
});

t.test('a non-SPIFFE client certificate is rejected (curl and openssl s_client)', async (t) => {
  const dir = mesh.dir;
  const cert = await mesh.issuer.ca.issueCertificate({ dnsNames: ['client.example'], subject: 'CN=client.example' });
  const good = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  writeFileSync(path.join(dir, 'plain.pem'), cert.chainPem);
  writeFileSync(path.join(dir, 'plain-key.pem'), cert.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'good.pem'), good.certChainPem);
  writeFileSync(path.join(dir, 'good-key.pem'), good.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'root.pem'), mesh.issuer.ca.rootPem());
  const url = `${mesh.inboundUrl}/agents`;
  // The servers live in this process: the clients must run asynchronously.
  const curl = (c: string, k: string) =>
    run('curl', ['-sS', '-k', '--cacert', path.join(dir, 'root.pem'), '--cert', path.join(dir, c), '--key', path.join(dir, k), '-o', '-', '-w', '\n%{http_code}', '--max-time', '60', url]);

  const ok = await curl('good.pem', 'good-key.pem');
  t.equal(ok.status, 0, `curl with an SVID: ${ok.stderr}`);
  t.match(ok.stdout.trim().split('\n').pop(), '200');

  const before = rejections('svid_no_uri_san');
  const bad = await curl('plain.pem', 'plain-key.pem');
  t.not(bad.status, 0, 'curl with a non-SPIFFE certificate fails');
  t.notMatch(bad.stdout, /200/);
  t.equal(rejections('svid_no_uri_san'), before + 1, 'audited as svid_no_uri_san');

  const port = String(mesh.server.inbound!.address()!.port);
  // -cert_chain: s_client sends only the first certificate of -cert otherwise.
  const sClient = (c: string, k: string) =>
    run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', path.join(dir, c), '-cert_chain', path.join(dir, c), '-key', path.join(dir, k), '-CAfile', path.join(dir, 'root.pem'), '-quiet', '-ign_eof'],
      'GET /agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
  t.match((await sClient('good.pem', 'good-key.pem')).stdout, /^HTTP\/1\.1 200 OK/, 'openssl s_client with an SVID gets 200');
  const s = await sClient('plain.pem', 'plain-key.pem');
  t.notMatch(s.stdout, /HTTP\/1\.1/, 'openssl s_client with a non-SPIFFE certificate gets no HTTP response');
  t.equal(rejections('svid_no_uri_san'), before + 2, 'rejected by the SPIFFE verifier, not by OpenSSL');

  const none = await run('curl', ['-sS', '-k', '--max-time', '60', url]);
  t.not(none.status, 0, 'no client certificate at all: handshake refused');
});

t.test('an SVID that expires on a kept-alive connection is refused at the next request', async (t) => {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'), { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 6_000) }); // room for the first request on a loaded machine
  let connects = 0;
  const client = new Client(mesh.inboundUrl, {
    connect: { cert: svid.certChainPem, key: svid.keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined },
    pipelining: 1,
    keepAliveTimeout: 60_000,
  });
  client.on('connect', () => connects++);
  t.teardown(() => client.close());
  const first = await client.request({ path: '/agents', method: 'GET' });
  t.equal(first.statusCode, 200);
  await first.body.text();
  await new Promise((r) => setTimeout(r, Math.max(0, svid.svid.notAfter.getTime() - Date.now()) + 300));
  const second = await client.request({ path: '/agents', method: 'GET' });
  t.equal(second.statusCode, 403);
  t.same(await second.body.json(), { error: 'Peer SVID expired' });
  t.equal(second.headers.connection, 'close', 'the server closes the connection');
  t.equal(connects, 1, 'both requests used the same kept-alive connection');
});

t.test('outbound: a server with the wrong SPIFFE ID is refused', async (t) => {
  const agent = await mesh.addAgent('picky', idOf('somebody-else'));
  const r = await viaProxy(`http://127.0.0.1:${agent.outbound!.address()!.port}`, 'GET', 'http://control-plane/agents');
  t.equal(r.status, 502);
  t.match(JSON.parse(r.body).error, /Upstream identity rejected: server is spiffe:\/\/agent-mesh\.local\/ns\/agent-swarm\/sa\/control-plane, route expects spiffe:\/\/agent-mesh\.local\/ns\/agent-swarm\/sa\/somebody-else/);
  t.equal(mesh.app.seen.filter((s) => s.headers['x-spiffe-id'] === idOf('picky')).length, 0, 'no request reached the app');
});
