/**
 * A sidecar pair on real SPIRE: a service sidecar (inbound, in front of an echo app) and an agent
 * sidecar (outbound route to the service with its server_id), each an `attest-sidecar run`
 * process with its own registration entry. Plus what the SPIRE scenarios watch with: a load of
 * concurrent requests through the pair that records every failure, and a poller of each
 * sidecar's /status that records every SVID it held.
 */
import { readJsonLines } from './json-lines.js';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SpireDeployment } from '../../src/mesh/spire/deployment.js';
import { EchoApp, viaProxy } from './mesh.js';
import { freePort } from './ports.js';
import { getStatus, sidecarProcess, until, type SidecarProcess } from './spire.js';

interface Tap {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

export const PAIR_TD = 'pair.spire.test';
export const SERVICE_ID = `spiffe://${PAIR_TD}/service`;
export const AGENT_ID = `spiffe://${PAIR_TD}/agent`;

/** The SVID part of a sidecar's /status. */
export interface SvidStatus {
  serial: string;
  not_before: string;
  not_after: string;
  generation: number;
}

/** One sidecar process of the pair with its admin endpoints. */
export class PairMember {
  constructor(
    readonly proc: SidecarProcess,
    readonly spiffeId: string,
    readonly adminPort: number,
  ) {}

  get admin(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  async status(): Promise<Record<string, any> | undefined> {
    const r = await getStatus(`${this.admin}/status`);
    return r?.status === 200 ? (JSON.parse(r.body) as Record<string, any>) : undefined;
  }

  async readyz(): Promise<{ status: number; body: Record<string, any> } | undefined> {
    const r = await getStatus(`${this.admin}/readyz`);
    return r ? { status: r.status, body: JSON.parse(r.body) as Record<string, any> } : undefined;
  }

  async svid(): Promise<SvidStatus | undefined> {
    return ((await this.status())?.svid as SvidStatus | null) ?? undefined;
  }

  /** Sum of the samples of metric `name` (all label sets). */
  async metric(name: string): Promise<number> {
    const r = await getStatus(`${this.admin}/metrics`);
    let sum = 0;
    for (const line of (r?.body ?? '').split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }
}

export interface SpirePairOptions {
  /** X509-SVID TTL of both entries (SPIRE adds 10 s of backdating to the lifetime). */
  x509SvidTtlSeconds: number;
  /** Register the agent sidecar's entry at start (default true); false leaves it unregistered. */
  registerAgent?: boolean;
  /** Further agents the service's policy allows `things.read` (name -> SPIFFE ID). */
  policyAgents?: Record<string, string>;
  /** YAML route lines appended to the agent sidecar's `routes:` (indented 4). */
  extraRoutes?: string;
}

export class SpirePair {
  readonly app = new EchoApp();
  service!: PairMember;
  agent!: PairMember;
  outboundPort = 0;
  inboundPort = 0;
  /** The service sidecar's audit log (JSON lines). */
  auditFile = '';
  readonly entries: { service?: string; agent?: string } = {};

  private constructor(
    readonly spire: SpireDeployment,
    private readonly opts: SpirePairOptions,
  ) {}

  /** Starts the app and both sidecars, registers the entries, waits until the registered ones are ready. */
  static async start(t: Tap, spire: SpireDeployment, opts: SpirePairOptions): Promise<SpirePair> {
    const pair = new SpirePair(spire, opts);
    t.teardown(() => pair.app.close());
    await pair.init(t);
    return pair;
  }

  private async init(t: Tap): Promise<void> {
    const appUrl = await this.app.start();
    const inboundPort = (this.inboundPort = await freePort());
    this.outboundPort = await freePort();
    const identity = `identity: { source: workload-api, socket: "unix://${this.spire.workloadSocket}" }`;

    const service = sidecarProcess(t, this.spire, 'service');
    this.service = new PairMember(service, SERVICE_ID, await freePort());
    const agents = { agent: AGENT_ID, ...(this.opts.policyAgents ?? {}) };
    writeFileSync(
      path.join(service.dir, 'policy.yaml'),
      `agents:\n${Object.entries(agents)
        .map(([name, id]) => `  - name: ${name}\n    spiffe_id: ${id}\n    allowed_actions: [things.read]\n`)
        .join('')}`,
    );
    this.auditFile = path.join(service.dir, 'audit.log');
    service.start(`${identity}
inbound:
  listen: 127.0.0.1:${inboundPort}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
policy: policy.yaml
admin: { listen: 127.0.0.1:${this.service.adminPort}, token_file: admin-token }
state_dir: state
log: { level: info, audit: ${this.auditFile} }
`);

    const agent = sidecarProcess(t, this.spire, 'agent');
    this.agent = new PairMember(agent, AGENT_ID, await freePort());
    agent.start(`${identity}
outbound:
  listen: 127.0.0.1:${this.outboundPort}
  routes:
    - { name: things, upstream: "https://127.0.0.1:${inboundPort}", server_id: "${SERVICE_ID}" }
${this.opts.extraRoutes ?? ''}
admin: { listen: 127.0.0.1:${this.agent.adminPort} }
state_dir: state
log: { level: info }
`);

    const ttl = { x509SvidTtlSeconds: this.opts.x509SvidTtlSeconds };
    this.entries.service = await this.spire.createEntry({ spiffeId: SERVICE_ID, selectors: [service.selector], ...ttl });
    if (this.opts.registerAgent !== false) this.entries.agent = await this.spire.createEntry({ spiffeId: AGENT_ID, selectors: [agent.selector], ...ttl });
    await this.untilReady(this.service);
    if (this.entries.agent) await this.untilReady(this.agent);
  }

  /** Creates the agent sidecar's entry (when started with registerAgent: false). */
  async registerAgent(): Promise<string> {
    this.entries.agent = await this.spire.createEntry({ spiffeId: AGENT_ID, selectors: [this.agent.proc.selector], x509SvidTtlSeconds: this.opts.x509SvidTtlSeconds });
    return this.entries.agent;
  }

  untilReady(member: PairMember, ms = 60_000): Promise<true> {
    return until(async () => ((await member.readyz())?.status === 200 ? true : undefined), `${member.proc.name} ready`, ms, () => this.context());
  }

  /** One GET through the agent sidecar's outbound proxy to the service (fresh connection unless `agent` is given). */
  request(agent?: http.Agent): Promise<{ status: number; body: string }> {
    return viaProxy(`http://127.0.0.1:${this.outboundPort}`, 'GET', 'http://things/things/1', agent ? { agent } : {});
  }

  /** The service sidecar's audit records so far. */
  serviceAudit(): Record<string, unknown>[] {
    return readJsonLines(this.auditFile);
  }

  /** Both sidecars' stderr and exit state, for failure messages. */
  context(): string {
    return [this.service, this.agent]
      .filter((m) => m !== undefined)
      .map((m) => `--- ${m.proc.name}: ${m.proc.exited ?? 'running'}\n${m.proc.stderr.slice(-3000)}`)
      .join('\n');
  }
}

/** Concurrent requests through the pair until stop(); every non-200 answer or error is recorded with its time. */
export class Load {
  ok = 0;
  readonly failures: { at: number; what: string }[] = [];
  private running = true;
  private readonly workers: Promise<void>[] = [];
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  constructor(
    private readonly send: (agent: http.Agent | undefined) => Promise<{ status: number; body: string }>,
    concurrency = 4,
    /** Pause between one worker's requests: keeps the load steady without starving a 2-core machine. */
    private readonly pauseMs = 20,
  ) {
    for (let i = 0; i < concurrency; i++) this.workers.push(this.worker(i));
  }

  private async worker(i: number): Promise<void> {
    let n = 0;
    while (this.running) {
      // Mostly pooled connections, every tenth a fresh one (so new handshakes happen all along).
      const fresh = (n++ + i) % 10 === 0;
      try {
        const r = await this.send(fresh ? undefined : this.agent);
        if (r.status === 200) this.ok++;
        else this.failures.push({ at: Date.now(), what: `${r.status} ${r.body.slice(0, 200)}` });
      } catch (err) {
        this.failures.push({ at: Date.now(), what: `error: ${(err as Error).message}` });
      }
      await new Promise((r) => setTimeout(r, this.pauseMs));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
    this.agent.destroy();
  }
}

/** Every distinct SVID a sidecar reported in /status, with when the poller first saw it. */
export class SvidHistory {
  readonly seen: (SvidStatus & { seenAt: number })[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly member: PairMember) {
    this.loop = this.poll();
  }

  private async poll(): Promise<void> {
    while (this.running) {
      const svid = await this.member.svid().catch(() => undefined);
      if (svid && this.seen.at(-1)?.serial !== svid.serial) this.seen.push({ ...svid, seenAt: Date.now() });
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Rotations so far: each new SVID with when SPIRE issued it and when the sidecar showed it, in seconds after the previous SVID's NotBefore. */
  rotations(): { issuedAfter: number; seenAfter: number; previousNotAfter: number; seenAt: number }[] {
    const out = [];
    for (let i = 1; i < this.seen.length; i++) {
      const prev = this.seen[i - 1]!;
      const next = this.seen[i]!;
      const prevNb = Date.parse(prev.not_before);
      // SPIRE backdates NotBefore by 10 s: the new SVID was signed 10 s after its NotBefore.
      out.push({
        issuedAfter: (Date.parse(next.not_before) + 10_000 - prevNb) / 1000,
        seenAfter: (next.seenAt - prevNb) / 1000,
        previousNotAfter: Date.parse(prev.not_after),
        seenAt: next.seenAt,
      });
    }
    return out;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
