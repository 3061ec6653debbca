/**
 * What the SPIRE scenarios look at a sidecar pair (test/helpers/spire-pair.ts) with, from the
 * test's own process: its SPIRE identity (`tapSelector`, `tapSource`), raw mTLS clients, the
 * chain a server sends, a probe upstream that records the chain a client sends, and the bundle
 * authorities a sidecar's /status lists.
 */
import { X509Certificate } from 'node:crypto';
import { realpathSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { SpireDeployment } from '../../src/mesh/spire/deployment.js';
import { svidChainPem, svidKeyPem, type X509Svid } from '../../src/spiffe/svid.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';

interface Tap {
  teardown(fn: () => unknown): void;
}

/** The selector of in-process workloads (the test process itself). */
export const tapSelector = (): string => `unix:path:${realpathSync(process.execPath)}`;

/** The SHA-256 fingerprints (as /status shows them, from `PairMember.status()`) a sidecar holds for `trustDomain`. */
export function authorities(status: Record<string, any> | undefined, trustDomain: string): string[] {
  const bundles = (status?.bundles ?? []) as { trust_domain: string; authorities: { sha256: string }[] }[];
  return bundles.find((b) => b.trust_domain === trustDomain)?.authorities.map((a) => a.sha256) ?? [];
}

/** The trust domains a sidecar's /status lists. */
export function trustDomains(status: Record<string, any> | undefined): string[] {
  return (status?.trust_domains ?? []) as string[];
}

/**
 * One raw mTLS GET straight to an inbound listener with the given client certificate chain:
 * resolves with the HTTP status, or with `refused: <error>` when the handshake or connection
 * failed before an answer.
 */
export function rawMtlsGet(port: number, certPem: string, keyPem: string, caPem: string, pathname = '/things/1'): Promise<{ status?: number; body: string; refused?: string }> {
  return new Promise((resolve) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: pathname, method: 'GET', cert: certPem, key: keyPem, ca: caPem, checkServerIdentity: () => undefined, agent: false, timeout: 30_000 },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
        res.on('error', (err) => resolve({ body, refused: err.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ body: '', refused: err.message }));
    req.end();
  });
}

/** The certificates a TLS peer sent, leaf first, in the order sent (Node's X509Certificate issuer links). */
export function sentChain(socket: tls.TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let c: X509Certificate | undefined = socket.getPeerX509Certificate(); c !== undefined && chain.length < 10; c = c.issuerCertificate) chain.push(c);
  return chain;
}

/** The chain the server on `port` sends in a fresh handshake (empty when the handshake failed). */
export function presentedChain(port: number, svid: X509Svid, caPem: string): Promise<X509Certificate[]> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, cert: svidChainPem(svid), key: svidKeyPem(svid), ca: caPem, checkServerIdentity: () => undefined, rejectUnauthorized: false });
    s.once('secureConnect', () => {
      resolve(sentChain(s));
      s.destroy();
    });
    s.once('error', () => resolve([]));
  });
}

/** A started Workload API source for the test process's entry with `hint` (closed at teardown). */
export async function tapSource(t: Tap, spire: SpireDeployment, hint?: string): Promise<WorkloadApiX509Source> {
  const source = new WorkloadApiX509Source({ endpoint: `unix://${spire.workloadSocket}`, ...(hint ? { hint } : {}) });
  t.teardown(() => source.close());
  source.start();
  await source.waitReady(60_000);
  return source;
}

/**
 * An HTTPS server in the test process (identity: the `source`'s SVID, followed as it rotates)
 * that records the chain each client sent; it closes each connection so that every request
 * shows the caller's current certificate. An outbound route to it shows what a sidecar presents.
 */
export async function probeServer(t: Tap, source: WorkloadApiX509Source, bundlePem: () => string): Promise<{ port: number; lastClientChain: () => X509Certificate[] }> {
  let last: X509Certificate[] = [];
  const contextOf = () => {
    const svid = source.current()!.svid;
    return { cert: svidChainPem(svid), key: svidKeyPem(svid), ca: bundlePem() };
  };
  const server = https.createServer({ ...contextOf(), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    last = sentChain(req.socket as tls.TLSSocket);
    res.writeHead(200, { connection: 'close', 'content-type': 'application/json' });
    res.end('{}');
  });
  const unsubscribe = source.subscribe(() => server.setSecureContext(contextOf()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        unsubscribe();
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as AddressInfo).port, lastClientChain: () => last };
}
