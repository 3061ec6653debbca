/**
 * A service sidecar and an agent sidecar, each its own process with its own SPIRE registration
 * entry, in front of an echo app: the agent reaches the service through its outbound route
 * `things` (GET /things/:id is `things.read`, which the policy grants to the agent sidecar and to
 * any `extraAgents`). Raw mTLS clients in the test's own process are `unix:path:<node>`
 * (`tapSelector`).
 *
 *   const spire = await startSpire(t, { trustDomain: 'rot.test' });
 *   const pair = await startSpirePair(t, spire, { ttlSeconds: 60 });
 *   t.equal((await pair.request()).status, 200);
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { SpireDeployment } from '../../src/mesh/spire/deployment.js';
import { svidChainPem, svidKeyPem, type X509Svid } from '../../src/spiffe/svid.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import { EchoApp, viaProxy } from './mesh.js';
import { freePort } from './ports.js';
import { getStatus, sidecarProcess, until, type SidecarProcess } from './spire.js';

interface Tap {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

/** The selector of in-process workloads (the test process itself). */
export const tapSelector = (): string => `unix:path:${realpathSync(process.execPath)}`;

export interface SpirePairOptions {
  /** X509-SVID TTL of both sidecars' entries; default 60 s. */
  ttlSeconds?: number;
  /** Trust domains the service's entry federates with. */
  serviceFederatesWith?: string[];
  /** Further agents the policy allows `things.read` (name -> SPIFFE ID). */
  extraAgents?: Record<string, string>;
  /** YAML route lines appended to the agent sidecar's `routes:` (indented 4). */
  extraRoutes?: string;
}

export interface SpirePair {
  spire: SpireDeployment;
  app: EchoApp;
  service: SidecarProcess;
  agent: SidecarProcess;
  serviceId: string;
  agentId: string;
  serviceEntry: string;
  agentEntry: string;
  ports: { inbound: number; adminService: number; outbound: number; adminAgent: number };
  auditFile: string;
  /** GET `path` through the agent sidecar's `things` route. */
  request(pathname?: string): Promise<{ status: number; body: string }>;
  /** `/status` of the service (`service`) or agent (`agent`) sidecar. */
  status(which: 'service' | 'agent'): Promise<SidecarStatus>;
  /** The service sidecar's audit records so far. */
  audit(): Record<string, unknown>[];
  /** Logs of both sidecars and SPIRE, for failure messages. */
  context(): string;
}

export interface SidecarStatus {
  spiffe_id: string | null;
  svid: { serial: string; not_before: string; not_after: string; generation: number } | null;
  trust_domains: string[];
  bundles: { trust_domain: string; authorities: { subject: string; sha256: string }[] }[];
  inbound: { peers: { spiffe_id: string; serial: string }[] } | null;
}

/** The SHA-256 fingerprints (as /status shows them) the sidecar holds for `trustDomain`. */
export function authorities(status: SidecarStatus, trustDomain: string): string[] {
  return status.bundles.find((b) => b.trust_domain === trustDomain)?.authorities.map((a) => a.sha256) ?? [];
}

function spireLogs(spire: SpireDeployment): string {
  const tail = (f: string) => {
    try {
      return readFileSync(path.join(spire.dir, f), 'utf8').slice(-3000);
    } catch {
      return '(none)';
    }
  };
  return `server.log: ${tail('server.log')}\nagent.log: ${tail('agent.log')}`;
}

export async function startSpirePair(t: Tap, spire: SpireDeployment, opts: SpirePairOptions = {}): Promise<SpirePair> {
  const td = spire.trustDomain;
  const serviceId = `spiffe://${td}/service`;
  const agentId = `spiffe://${td}/agent/a1`;
  const ttl = opts.ttlSeconds ?? 60;
  const app = new EchoApp();
  t.teardown(() => app.close());
  const appUrl = await app.start();
  const service = sidecarProcess(t, spire, 'svc');
  const agent = sidecarProcess(t, spire, 'agent');
  const serviceEntry = await spire.createEntry({
    spiffeId: serviceId,
    selectors: [service.selector],
    x509SvidTtlSeconds: ttl,
    ...(opts.serviceFederatesWith ? { federatesWith: opts.serviceFederatesWith } : {}),
  });
  const agentEntry = await spire.createEntry({ spiffeId: agentId, selectors: [agent.selector], x509SvidTtlSeconds: ttl });
  const ports = { inbound: await freePort(), adminService: await freePort(), outbound: await freePort(), adminAgent: await freePort() };
  const policyAgents = { a1: agentId, ...(opts.extraAgents ?? {}) };
  writeFileSync(
    path.join(service.dir, 'policy.yaml'),
    `agents:\n${Object.entries(policyAgents)
      .map(([name, id]) => `  - name: ${name}\n    spiffe_id: ${id}\n    allowed_actions: [things.read]\n`)
      .join('')}`,
  );
  const identity = `identity: { source: workload-api, socket: "unix://${spire.workloadSocket}" }`;
  const auditFile = path.join(service.dir, 'audit.log');
  service.start(`${identity}
inbound:
  listen: 127.0.0.1:${ports.inbound}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
policy: policy.yaml
admin: { listen: 127.0.0.1:${ports.adminService} }
state_dir: state
log: { level: warn, audit: ${auditFile} }
`);
  agent.start(`${identity}
outbound:
  listen: 127.0.0.1:${ports.outbound}
  routes:
    - { name: things, upstream: "https://127.0.0.1:${ports.inbound}", server_id: "${serviceId}" }
${opts.extraRoutes ?? ''}
admin: { listen: 127.0.0.1:${ports.adminAgent} }
state_dir: state
log: { level: warn, audit: ${path.join(agent.dir, 'audit.log')} }
`);
  const context = () =>
    `${service.exited ?? `svc stderr: ${service.stderr}`}\n${agent.exited ?? `agent stderr: ${agent.stderr}`}\n${spireLogs(spire)}`;
  for (const port of [ports.adminService, ports.adminAgent]) {
    await until(async () => ((await getStatus(`http://127.0.0.1:${port}/readyz`))?.status === 200 ? true : undefined), `sidecar ready on ${port}`, 60_000, context);
  }
  const status = async (which: 'service' | 'agent'): Promise<SidecarStatus> => {
    const port = which === 'service' ? ports.adminService : ports.adminAgent;
    const res = await getStatus(`http://127.0.0.1:${port}/status`);
    if (res?.status !== 200) throw new Error(`/status of ${which}: ${res?.status ?? 'no answer'}`);
    return JSON.parse(res.body) as SidecarStatus;
  };
  const audit = () => {
    let text = '';
    try {
      text = readFileSync(auditFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  return {
    spire,
    app,
    service,
    agent,
    serviceId,
    agentId,
    serviceEntry,
    agentEntry,
    ports,
    auditFile,
    request: async (pathname = '/things/1') => {
      const r = await viaProxy(`http://127.0.0.1:${ports.outbound}`, 'GET', `http://things${pathname}`);
      return { status: r.status, body: r.body };
    },
    status,
    audit,
    context,
  };
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
