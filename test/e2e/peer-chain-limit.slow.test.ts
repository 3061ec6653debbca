/**
 * Bounded peer certificate chains, over real sockets: a valid SVID presented with 150 junk CA
 * certificates is refused right after the handshake (closed, audited), the listener keeps
 * serving; a linked chain longer than MAX_PEER_CHAIN_LENGTH is refused before any parsing.
 */
import type { DetailedPeerCertificate } from 'node:tls';
import tls from 'node:tls';
import t from 'tap';
import { MAX_PEER_CHAIN_LENGTH, chainFromDetailed } from '../../src/spiffe/tls.js';
import { makeCa } from '../helpers/certs.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start({ agents: ['orchestrator'] });
t.teardown(() => mesh.close());

/** Connects with `certPem`; resolves with what the server sent back and whether it closed. */
function tryRequest(certPem: string, keyPem: string): Promise<{ secure: boolean; response: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: mesh.server.inbound!.address()!.port, cert: certPem, key: keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined });
    let secure = false;
    let response = '';
    let error: string | undefined;
    const timer = setTimeout(() => socket.destroy(), 20_000);
    socket.on('secureConnect', () => {
      secure = true;
      socket.write('GET /agents HTTP/1.1\r\nHost: control-plane\r\n\r\n');
    });
    socket.on('data', (c: Buffer) => (response += c));
    socket.on('error', (e) => (error = e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ secure, response, ...(error ? { error } : {}) });
    });
  });
}

t.test('a valid SVID with 150 junk CA certificates is refused, and the listener still serves', async (t) => {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const junk: string[] = [];
  for (let i = 0; i < 150; i++) junk.push((await makeCa({ name: `Junk CA ${i}` })).pem);
  const before = mesh.serverAudit.records.length;
  const r = await tryRequest(`${svid.certChainPem}\n${junk.join('\n')}`, svid.keyPem);
  t.equal(r.response, '', `no HTTP answer: the connection was closed (${r.error ?? 'closed'})`);
  const rejected = mesh.serverAudit.records.slice(before).find((rec) => rec.type === 'peer_rejected');
  t.equal(rejected?.reason, 'svid_chain_too_long', JSON.stringify(rejected));

  // The same SVID without the junk, and another agent through its sidecar, are served.
  const plain = await tryRequest(svid.certChainPem, svid.keyPem);
  t.match(plain.response, /^HTTP\/1\.1 200 /, plain.response.slice(0, 200));
  const viaSidecar = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.equal(viaSidecar.status, 200, viaSidecar.body);
});

t.test('a linked chain longer than the limit is refused before it is parsed', async (t) => {
  // Node's detailed chain links issuers; no certificate beyond the limit is touched.
  const links: DetailedPeerCertificate[] = [];
  for (let i = 0; i <= MAX_PEER_CHAIN_LENGTH; i++) {
    links.push({ raw: Buffer.from([0x30, i]), fingerprint256: `${i}` } as unknown as DetailedPeerCertificate);
  }
  links.forEach((c, i) => ((c as { issuerCertificate?: DetailedPeerCertificate }).issuerCertificate = links[i + 1]));
  t.throws(() => chainFromDetailed(links[0]!), { name: 'SidecarError', reason: 'svid_chain_too_long' });
  t.throws(() => chainFromDetailed(links[1]!), /Invalid|PEM|DER|certificate|asn1|header/i, 'a chain of exactly the limit is parsed (and these bytes are no certificates)');
});
