/**
 * Builds small meshes for end-to-end tests over real sockets: the dev issuer (real gRPC on
 * Unix sockets), an upstream app, an inbound sidecar and agent-side outbound sidecars. All
 * listeners use port 0.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SidecarConfig } from '../../src/config/types.js';
import type { ActionMappingConfig } from '../../src/policy/actions.js';
import { INBOUND_LIMIT_DEFAULTS, OUTBOUND_LIMIT_DEFAULTS } from '../../src/lib/listener-limits.js';
import { MemoryAuditSink } from '../../src/audit/record.js';
import { createLogger } from '../../src/log.js';
import { Sidecar } from '../../src/sidecar.js';
import { DevIssuer } from '../../src/dev/issuer.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import type { X509Source } from '../../src/spiffe/source.js';
import type { Attester } from '../../src/attestation/attester.js';
import type { VerifierTrust } from '../../src/attestation/kinds.js';
import type { RequestLimits } from '../../src/proxy/peer-admission.js';

export const TD = 'agent-mesh.local';
export const idOf = (name: string) => `spiffe://${TD}/ns/agent-swarm/sa/${name}`;

export const DEFAULT_ACTIONS: ActionMappingConfig[] = [
  { method: 'POST', path: '/tasks', action: 'task.dispatch' },
  { method: 'GET', path: '/agents', action: 'agent.list' },
  { method: 'GET', path: '/agents/:id/status', action: 'agent.status' },
  { method: 'POST', path: '/fuzzer/harness', action: 'fuzzer.write_harness' },
  { method: 'POST', path: '/upload', action: 'upload' },
];

export const DEFAULT_POLICY = `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [task.dispatch, agent.status, agent.list, upload]
  - name: harness-writer
    spiffe_id: ${idOf('harness-writer')}
    allowed_actions: [fuzzer.write_harness]
`;

export const silentLogger = () => createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** An upstream app that echoes what it received (method, path, headers in both forms, body length). */
export class EchoApp {
  readonly server: http.Server;
  readonly seen: { method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[]; bytes: number }[] = [];

  constructor() {
    this.server = http.createServer((req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        const rec = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, bytes };
        this.seen.push(rec);
        if (this.seen.length > 1000) this.seen.shift();
        const body = JSON.stringify(rec);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }
}

export interface TestMeshOptions {
  svidTtlSeconds?: number;
  policy?: string;
  actions?: ActionMappingConfig[];
  agents?: string[];
  /** Override the route's expected server ID (to test mismatches). */
  serverId?: string;
  now?: () => number;
  /** Per agent name: its evidence producer. */
  attesters?: Record<string, Attester>;
  /** What the inbound sidecar trusts for evidence. */
  trust?: VerifierTrust;
  /** Revocation lists the server sidecar watches. */
  sharedRevocations?: string[];
  budgetStore?: SidecarConfig['budget'];
  /** Request limits of every sidecar in the mesh (server and agents). */
  requestLimits?: Partial<RequestLimits>;
  /** The agents' request limits, when they differ from `requestLimits`. */
  agentRequestLimits?: Partial<RequestLimits>;
}

export class TestMesh {
  dir = mkdtempSync(path.join(tmpdir(), 'attest-test-'));
  issuer!: DevIssuer;
  app = new EchoApp();
  appUrl = '';
  server!: Sidecar;
  serverAudit = new MemoryAuditSink();
  agents = new Map<string, Sidecar>();
  policyFile = '';
  serverConfig!: SidecarConfig;
  private serverOpts: TestMeshOptions = {};
  private sources: X509Source[] = [];

  static async start(opts: TestMeshOptions = {}): Promise<TestMesh> {
    const m = new TestMesh();
    try {
      await m.init(opts);
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  }

  private async source(spiffeId: string): Promise<X509Source> {
    const { endpoint } = await this.issuer.registerWorkload(spiffeId);
    const s = new WorkloadApiX509Source({ endpoint });
    s.start();
    this.sources.push(s);
    return s;
  }

  private async init(opts: TestMeshOptions): Promise<void> {
    this.issuer = await DevIssuer.start({ trustDomain: TD, socketDir: this.dir, svidTtlSeconds: opts.svidTtlSeconds ?? 60 });
    this.appUrl = await this.app.start();
    this.policyFile = path.join(this.dir, 'policy.yaml');
    writeFileSync(this.policyFile, opts.policy ?? DEFAULT_POLICY);
    const serverConfig: SidecarConfig = {
      file: '<test>',
      name: 'control-plane',
      identity: { source: 'workload-api', socket: 'unused', startupTimeoutMs: 10_000 },
      inbound: {
        listen: { host: '127.0.0.1', port: 0 },
        app: this.appUrl,
        actions: opts.actions ?? DEFAULT_ACTIONS,
        requestTimeoutMs: 5_000,
        limits: { ...INBOUND_LIMIT_DEFAULTS },
      },
      policy: this.policyFile,
      admin: { listen: { host: '127.0.0.1', port: 0 }, tokenFile: path.join(this.dir, 'admin-token') },
      log: { level: 'silent', audit: 'stdout' },
      stateDir: path.join(this.dir, 'state', 'control-plane'),
      revocations: { sharedFiles: opts.sharedRevocations ?? [] },
      budget: opts.budgetStore ?? { store: 'file' },
    };
    this.serverConfig = serverConfig;
    this.serverOpts = opts;
    this.server = await this.startServer();
    for (const name of opts.agents ?? ['orchestrator', 'harness-writer', 'intruder']) {
      await this.addAgent(name, opts.serverId ?? idOf('control-plane'), opts.attesters?.[name]);
    }
  }

  private async startServer(config = this.serverConfig): Promise<Sidecar> {
    const opts = this.serverOpts;
    return Sidecar.start({
      config,
      source: await this.source(idOf('control-plane')),
      logger: silentLogger(),
      audit: this.serverAudit,
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.trust ? { attestationTrust: opts.trust } : {}),
      ...(opts.requestLimits ? { requestLimits: opts.requestLimits } : {}),
    });
  }

  /**
   * Stops the server sidecar and starts a new one on the same inbound port and state dir (a
   * restart: what it persisted must still hold).
   */
  async restartServer(): Promise<Sidecar> {
    const port = this.server.inbound!.address()!.port;
    await this.server.close();
    const config = { ...this.serverConfig, inbound: { ...this.serverConfig.inbound!, listen: { host: '127.0.0.1', port } } };
    this.server = await this.startServer(config);
    return this.server;
  }

  /** Another inbound sidecar like the server (a replica): its own port, admin and state dir. */
  startReplica(label: string, overrides: Partial<SidecarConfig> = {}): Promise<Sidecar> {
    return this.startSidecar('control-plane', {
      ...this.serverConfig,
      inbound: { ...this.serverConfig.inbound!, listen: { host: '127.0.0.1', port: 0 } },
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      stateDir: path.join(this.dir, 'state', label),
      ...overrides,
    });
  }

  /** Starts another sidecar with identity `idOf(name)` and this config (closed with the mesh). */
  async startSidecar(name: string, config: SidecarConfig, opts: { attester?: Attester; trust?: VerifierTrust } = {}): Promise<Sidecar> {
    const s = await Sidecar.start({
      config,
      source: await this.source(idOf(name)),
      logger: silentLogger(),
      audit: new MemoryAuditSink(),
      ...(opts.attester ? { attester: opts.attester } : {}),
      ...(opts.trust ? { attestationTrust: opts.trust } : {}),
    });
    this.agents.set(`${name}#${this.agents.size}`, s);
    return s;
  }

  get inboundUrl(): string {
    return `https://127.0.0.1:${this.server.inbound!.address()!.port}`;
  }

  agentConfig(name: string, serverId: string): SidecarConfig {
    return {
      file: '<test>',
      name,
      identity: { source: 'workload-api', socket: 'unused', startupTimeoutMs: 10_000 },
      outbound: {
        listen: { host: '127.0.0.1', port: 0 },
        allowNonLoopback: false,
        routes: [
          { name: 'control-plane', upstream: this.inboundUrl, tls: 'spiffe', serverId, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000, injectHeaders: [] },
        ],
        limits: { ...OUTBOUND_LIMIT_DEFAULTS },
      },
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      log: { level: 'silent', audit: 'stdout' },
      stateDir: path.join(this.dir, 'state', name),
      revocations: { sharedFiles: [] },
      budget: { store: 'file' },
    };
  }

  async addAgent(name: string, serverId = idOf('control-plane'), attester?: Attester): Promise<Sidecar> {
    const s = await Sidecar.start({
      config: this.agentConfig(name, serverId),
      source: await this.source(idOf(name)),
      ...(attester ? { attester } : {}),
      ...(this.serverOpts.agentRequestLimits ?? this.serverOpts.requestLimits ? { requestLimits: this.serverOpts.agentRequestLimits ?? this.serverOpts.requestLimits } : {}),
      logger: silentLogger(),
      audit: new MemoryAuditSink(),
    });
    this.agents.set(name, s);
    return s;
  }

  /** `http://127.0.0.1:PORT` of an agent's outbound proxy. */
  proxyOf(name: string): string {
    return `http://127.0.0.1:${this.agents.get(name)!.outbound!.address()!.port}`;
  }

  /**
   * One raw mTLS request straight to the inbound listener with the given client certificate
   * (no outbound sidecar): for identities and evidence a sidecar would never send.
   */
  mtlsRequest(
    certPem: string,
    keyPem: string,
    opts: { method?: string; path?: string; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      // Host, port and path as options, not a URL: the path goes out byte for byte (no dot-segment resolution).
      const req = https.request(
        { host: '127.0.0.1', port: this.server.inbound!.address()!.port, path: opts.path ?? '/agents', method: opts.method ?? 'GET', cert: certPem, key: keyPem, ca: this.issuer.ca.rootPem(), checkServerIdentity: () => undefined, agent: false, headers: opts.headers ?? {} },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  adminOf(s: Sidecar): string {
    return `http://127.0.0.1:${s.admin!.address()!.port}`;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.agents.values()].map((s) => s.close()));
    await this.server?.close();
    await Promise.allSettled(this.sources.map((s) => s.close()));
    await this.app.close().catch(() => undefined);
    await this.issuer?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Sends a request through an outbound proxy the way an agent with HTTP_PROXY does: absolute-form
 * request line to the proxy, Host = route name.
 */
export function viaProxy(
  proxy: string,
  method: string,
  url: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer; agent?: http.Agent; originForm?: boolean } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const p = new URL(proxy);
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: p.hostname,
        port: p.port,
        method,
        path: opts.originForm ? target.pathname + target.search : url,
        headers: { host: target.host, ...(opts.headers ?? {}) },
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}
