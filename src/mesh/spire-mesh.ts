/**
 * The development mesh on a real SPIRE server and agent (DEVELOPMENT ONLY; `attest-sidecar dev
 * --spire`): the same mesh file as the in-process mesh, but each sidecar is its own
 * `attest-sidecar run` process under a node binary of its own, registered by one entry
 * (`unix:path:<that binary>`, the SPIFFE ID its config names, the mesh's SVID TTL), and gets
 * its SVIDs from the agent's Workload API. The demo app runs in this process, as in `npm start`.
 * Every child is stopped by pid on close(); `died` reports the first one that ends on its own.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { ConfigError, SidecarError } from '../errors.js';
import type { SidecarConfig } from '../config/types.js';
import type { Logger } from '../lib/log.js';
import { createAdminTokenFile } from '../admin/auth.js';
import { generateSimKey } from '../attestation/sim/report.js';
import { listenError } from '../startup-errors.js';
import { findSpireBinaries } from './spire/binaries.js';
import { fileTail } from './spire/children.js';
import { SpireDeployment } from './spire/deployment.js';
import { DemoApp } from './demo-app.js';
import type { DevMeshSpec } from './mesh.js';
import { devStateDir } from './paths.js';
import { PortMap, sidecarName } from './ports.js';
import { carriedOverState, devSidecarStateDir, wipeDevState } from './state.js';
import { childConfigYaml } from './child-config.js';
import { childLogLevel, SidecarChild, type ListenerKind } from './sidecar-child.js';
import type { MeshSpireView, MeshView } from './view.js';

export interface SpireMeshOptions {
  /** Folder holding spire-server and spire-agent. */
  binDir: string;
  logger: Logger;
  /** The mesh's log level (the children's forwarded lines are filtered by it). */
  logLevel: string;
  svidTtlSeconds?: number;
  stateDir?: string;
  fresh?: boolean;
  freePorts?: boolean;
  /** Where the children's output goes; default this process's stdout and stderr. */
  stdout?: Writable;
  stderr?: Writable;
  /** Bound on each sidecar's start (listeners bound, first SVID held); default 90 s. */
  startTimeoutMs?: number;
}

type Entry = MeshSpireView['entries'][number];

interface Member {
  name: string;
  config: SidecarConfig;
  node: string;
  child?: SidecarChild;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A file-name-safe form of a sidecar name (its node binary and config file are named after it). */
const fileName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_');

/** The address to reach a listener at from here (a wildcard bind is reached on loopback). */
function reachable(a: { address: string; port: number }): string {
  const host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
  return host.includes(':') ? `[${host}]:${a.port}` : `${host}:${a.port}`;
}

/** GET a sidecar's admin /status; undefined when it does not answer. */
async function fetchStatus(admin: { address: string; port: number }): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await fetch(`http://${reachable(admin)}/status`, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function listenerKinds(config: SidecarConfig): ListenerKind[] {
  return (['admin', 'outbound', 'inbound'] as const).filter((k) => config[k] !== undefined);
}

export class SpireMesh {
  /** Resolves with what happened when a child (sidecar, SPIRE server or agent) ends on its own. */
  readonly died: Promise<string>;
  readonly stateDir: string;
  private reportDeath: (why: string) => void = () => undefined;
  private closing = false;
  private closed: Promise<void> | undefined;
  private watch: NodeJS.Timeout | undefined;
  private deployment: SpireDeployment | undefined;
  /** SPIRE's start while it runs: close() waits for it, then stops what it started. */
  private deploying: Promise<SpireDeployment> | undefined;
  private app: DemoApp | undefined;
  private readonly members: Member[];
  private readonly entries: Entry[] = [];

  /** Nothing runs until start(); close() may be called at any time, also while start() runs. */
  constructor(
    readonly spec: DevMeshSpec,
    private readonly opts: SpireMeshOptions,
  ) {
    for (const config of spec.sidecars) {
      if (config.identity.source !== 'dev') throw new ConfigError('dev mesh sidecars must use identity.source: dev', { file: config.file, key: 'identity.source' });
    }
    this.stateDir = opts.stateDir ?? devStateDir();
    this.members = spec.sidecars.map((config) => ({ name: sidecarName(config), config, node: '' }));
    // A sidecar's node binary (its identity), config copy and state folder are named after it.
    const names = this.members.map((m) => fileName(m.name));
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) throw new ConfigError(`two sidecars are named '${twice}': each needs a name of its own with --spire`, { file: spec.file, key: 'sidecars' });
    this.died = new Promise((resolve) => (this.reportDeath = resolve));
  }

  get spire(): SpireDeployment {
    if (!this.deployment) throw new SidecarError('dev_spire_failed', 'SPIRE is not running');
    return this.deployment;
  }

  /** Starts SPIRE, the entries, the demo app and the sidecars; on failure stops what it started. */
  async start(): Promise<void> {
    const binaries = findSpireBinaries(this.opts.binDir);
    if (!binaries) {
      throw new SidecarError('dev_spire_failed', `no executable spire-server and spire-agent in ${this.opts.binDir}: build them with scripts/build-spire.sh`);
    }
    if (this.opts.fresh) {
      const removed = wipeDevState(this.stateDir, this.members.map((m) => m.name));
      this.opts.logger.warn({ removed }, 'dev mesh state deleted (--fresh): no revocations, no budget spend, a new admin token');
    }
    const ttl = this.opts.svidTtlSeconds ?? this.spec.svidTtlSeconds;
    try {
      this.deploying = SpireDeployment.start({ binaries, trustDomain: this.spec.trustDomain, defaultX509SvidTtlSeconds: ttl, logger: this.opts.logger });
      this.deployment = await this.deploying;
      this.stopIfClosing();
      await this.startParts(this.opts, ttl);
    } catch (err) {
      await this.close();
      throw err;
    }
    this.watchChildren();
  }

  /** Ends start() when close() was called meanwhile (close() stops only what existed then). */
  private stopIfClosing(): void {
    if (this.closing) throw new SidecarError('dev_spire_failed', 'stopped during start-up');
  }

  private async startParts(opts: SpireMeshOptions, ttl: number): Promise<void> {
    const runDir = path.join(this.spire.dir, 'mesh');
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    // One sim TEE key for the whole mesh, as in the in-process mesh: agents sign with it, the control plane trusts it.
    const sim = generateSimKey();
    const simKeyFile = path.join(runDir, 'sim-key.pem');
    const simPublicKeyFile = path.join(runDir, 'sim-key.pub.pem');
    writeFileSync(simKeyFile, sim.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(simPublicKeyFile, sim.publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o600 });

    const ports = new PortMap(opts.freePorts === true);
    if (this.spec.demoApp) {
      this.app = new DemoApp();
      const at = ports.listen(this.spec.demoApp);
      await this.app.start(at.host, at.port).catch((err: unknown) => Promise.reject(listenError('demo app', at, err)));
      ports.record(this.spec.demoApp, this.app.address());
    }

    // Entries first: SPIRE propagates them while the processes start.
    for (const m of this.members) {
      m.node = this.spire.linkedNode(fileName(m.name));
      const spiffeId = (m.config.identity as { spiffeId: string }).spiffeId;
      const selector = `unix:path:${m.node}`;
      const entryId = await this.spire.createEntry({ spiffeId, selectors: [selector], x509SvidTtlSeconds: ttl });
      this.entries.push({ name: m.name, entryId, spiffeId, selector, x509SvidTtlSeconds: ttl });
      this.stopIfClosing();
    }
    // Every sidecar of the mesh shares one admin token: made once here, before they race to create it.
    const tokenFile = (c: SidecarConfig) => c.admin?.tokenFile ?? path.join(this.stateDir, 'admin-token');
    for (const file of new Set(this.members.filter((m) => m.config.admin).map((m) => tokenFile(m.config)))) await createAdminTokenFile(file);

    const timeoutMs = opts.startTimeoutMs ?? 90_000;
    // Sidecars that others call (an inbound listener) start first, so that their real ports are known.
    const groups = [this.members.filter((m) => m.config.inbound), this.members.filter((m) => !m.config.inbound)];
    for (const group of groups) {
      this.stopIfClosing();
      await Promise.all(
        group.map(async (m) => {
          const config = ports.config(m.config);
          const configFile = path.join(runDir, `${fileName(m.name)}.yaml`);
          const yaml = childConfigYaml(config, {
            name: m.name,
            workloadSocket: this.spire.workloadSocket,
            stateDir: devSidecarStateDir(this.stateDir, m.name),
            adminTokenFile: config.admin ? tokenFile(config) : undefined,
            logLevel: childLogLevel(opts.logLevel),
            simKeyFile,
            simPublicKeyFile,
          });
          writeFileSync(configFile, yaml, { mode: 0o600 });
          this.stopIfClosing();
          m.child = new SidecarChild({ name: m.name, node: m.node, configFile, cwd: runDir, logLevel: opts.logLevel, stdout: opts.stdout ?? process.stdout, stderr: opts.stderr ?? process.stderr });
          await m.child.untilListening(listenerKinds(config), timeoutMs);
          ports.record(m.config.inbound?.listen, m.child.listening.inbound);
          await this.untilIdentity(m, timeoutMs);
        }),
      );
    }
  }

  /** Waits until the sidecar holds its first SVID (its /status names it); a sidecar without an admin listener is taken as it is. */
  private async untilIdentity(m: Member, timeoutMs: number): Promise<void> {
    const admin = m.child!.listening.admin;
    if (!admin) return;
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (m.child!.ended !== undefined) throw new SidecarError('dev_spire_failed', `${m.child!.describe()}`);
      const status = await fetchStatus(admin);
      if (status?.svid) return;
      await sleep(250);
    }
    throw new SidecarError('dev_spire_failed', `sidecar '${m.name}' holds no SVID after ${timeoutMs} ms (is its entry ${this.entries.find((e) => e.name === m.name)?.entryId} right?): ${m.child!.describe()}`);
  }

  /** From now on, a child that ends while the mesh is not closing resolves `died`. */
  private watchChildren(): void {
    for (const m of this.members) {
      void m.child!.exited.then(() => {
        if (!this.closing) this.reportDeath(m.child!.describe());
      });
    }
    // The runner's SPIRE processes expose only their pids: poll them.
    this.watch = setInterval(() => {
      if (this.closing) return;
      for (const [name, pid, log] of [
        ['spire-server', this.spire.serverPid, 'server.log'],
        ['spire-agent', this.spire.agentPid, 'agent.log'],
      ] as const) {
        if (pid === undefined) {
          const tail = fileTail(path.join(this.spire.dir, log), 2000).trim();
          this.reportDeath(`${name} ended; ${tail ? `its log ends with:\n${tail}` : 'its log is empty'}`);
        }
      }
    }, 1_000);
  }

  /** What the banner shows; SVIDs and carried-over state as each sidecar's /status reports them. */
  async view(): Promise<MeshView> {
    const statuses = new Map<string, Record<string, unknown>>();
    await Promise.all(
      this.members.map(async (m) => {
        const admin = m.child?.listening.admin;
        const status = admin && (await fetchStatus(admin));
        if (status) statuses.set(m.name, status);
      }),
    );
    const carried = new Map([...statuses].map(([name, status]) => [name, { status: () => status }]));
    return {
      trustDomain: this.spec.trustDomain,
      stateDir: this.stateDir,
      app: this.app?.address(),
      sidecars: this.members.map((m) => {
        const l = m.child?.listening ?? {};
        return {
          name: m.name,
          spiffeId: (statuses.get(m.name)?.spiffe_id as string | null | undefined) ?? null,
          ...(l.inbound && m.config.inbound ? { inbound: { address: l.inbound, app: (statuses.get(m.name)?.inbound as { app?: string } | null)?.app ?? m.config.inbound.app } } : {}),
          ...(l.outbound ? { outbound: l.outbound } : {}),
          ...(l.admin ? { admin: l.admin } : {}),
          ...(m.child?.pid !== undefined ? { pid: m.child.pid } : {}),
        };
      }),
      carriedOver: carriedOverState(carried),
      spire: {
        binDir: this.opts.binDir,
        dir: this.spire.dir,
        serverSocket: this.spire.serverSocket,
        workloadSocket: this.spire.workloadSocket,
        serverPid: this.spire.serverPid,
        agentPid: this.spire.agentPid,
        entries: this.entries,
      },
    };
  }

  /** Stops every sidecar process, the demo app, then the SPIRE agent and server (each by pid). */
  close(): Promise<void> {
    this.closed ??= this.stopAll();
    return this.closed;
  }

  private async stopAll(): Promise<void> {
    this.closing = true;
    clearInterval(this.watch);
    await Promise.allSettled(this.members.map((m) => m.child?.stop()));
    const app = this.app;
    this.app = undefined;
    await app?.close().catch(() => undefined);
    const deployment = this.deployment ?? (await this.deploying?.catch(() => undefined));
    await deployment?.stop();
  }
}
