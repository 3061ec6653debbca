/**
 * DEVELOPMENT AND TEST ONLY: a real single-host SPIRE deployment (server and agent from the
 * real v1.13.3 binaries) in one short temporary folder. Used by the tests and by
 * `attest-sidecar dev --spire`.
 *
 * SPIRE has no pid selector, so each workload is named by its binary: the agent discovers the
 * caller's executable path (`unix:path:<path>`). A process gets an identity of its own by
 * running a hard-linked copy of node (`linkedNode`); go-spiffe programs by their own binary.
 */
import { copyFileSync, chmodSync, linkSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SidecarError } from '../../errors.js';
import type { Logger } from '../../lib/log.js';
import { Child, run, type RunResult } from './children.js';
import { agentConfig, serverConfig } from './config.js';
import type { SpireBinaries } from './binaries.js';

export interface SpireOptions {
  binaries: SpireBinaries;
  trustDomain: string;
  /** Base folder; default a new /tmp/spire-XXXXXX (sockets live here: keep it short). Removed by stop() only when created here. */
  dir?: string;
  /** Server default X509-SVID TTL (entries may set their own); default 60 s. */
  defaultX509SvidTtlSeconds?: number;
  /** Server default JWT-SVID TTL; default 300 s (SPIRE's). */
  defaultJwtSvidTtlSeconds?: number;
  /** Server CA TTL; default 24 h (SPIRE's). */
  caTtlSeconds?: number;
  /** UpstreamAuthority "disk": SPIRE's signing CA becomes an intermediate under this root. */
  upstream?: { certPem: string; keyPem: string; bundlePem: string };
  /** SPIRE's own log level (its logs go to server.log / agent.log in `dir`); default WARN. */
  logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Bound on each start-up wait; default 60 s. */
  startTimeoutMs?: number;
  logger?: Logger;
}

/** A registration entry, as `spire-server entry create` takes it. */
export interface EntrySpec {
  spiffeId: string;
  /** `type:value` selectors, e.g. `unix:path:/tmp/spire-x/bin/agent-a`. */
  selectors: readonly string[];
  /** Default: the agent's ID. */
  parentId?: string;
  x509SvidTtlSeconds?: number;
  jwtSvidTtlSeconds?: number;
  hint?: string;
  /** Trust domains (`spiffe://partner.test` or `partner.test`) whose bundles workloads of this entry get. */
  federatesWith?: readonly string[];
  dns?: readonly string[];
  /** A custom entry ID (SPIRE generates one otherwise). */
  entryId?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function entryArgs(spec: EntrySpec): string[] {
  const args = ['-spiffeID', spec.spiffeId];
  for (const s of spec.selectors) args.push('-selector', s);
  if (spec.x509SvidTtlSeconds !== undefined) args.push('-x509SVIDTTL', String(spec.x509SvidTtlSeconds));
  if (spec.jwtSvidTtlSeconds !== undefined) args.push('-jwtSVIDTTL', String(spec.jwtSvidTtlSeconds));
  if (spec.hint) args.push('-hint', spec.hint);
  for (const td of spec.federatesWith ?? []) args.push('-federatesWith', td.startsWith('spiffe://') ? td : `spiffe://${td}`);
  for (const d of spec.dns ?? []) args.push('-dns', d);
  return args;
}

interface EntryResult {
  status?: { code?: number; message?: string };
  entry?: { id?: string };
}

function firstResult(out: RunResult, what: string): EntryResult {
  let parsed: { results?: EntryResult[] };
  try {
    parsed = JSON.parse(out.stdout) as { results?: EntryResult[] };
  } catch {
    throw new SidecarError('dev_spire_failed', `${what}: unreadable output: ${out.stdout.slice(0, 500)}`);
  }
  const result = parsed.results?.[0];
  if (!result || (result.status?.code ?? 0) !== 0) {
    throw new SidecarError('dev_spire_failed', `${what}: ${result?.status?.message ?? 'no result'}`);
  }
  return result;
}

export class SpireDeployment {
  readonly dir: string;
  readonly trustDomain: string;
  readonly binaries: SpireBinaries;
  /** The agent's Workload API socket (a sidecar's `identity.socket` is `unix://` + this). */
  readonly workloadSocket: string;
  /** The server's admin API socket. */
  readonly serverSocket: string;
  agentId = '';
  private readonly ownsDir: boolean;
  private readonly opts: SpireOptions;
  private readonly startTimeoutMs: number;
  private serverChild: Child | undefined;
  private agentChild: Child | undefined;
  private serverPort = 0;
  private stopping: Promise<void> | undefined;

  private constructor(opts: SpireOptions) {
    this.opts = opts;
    this.trustDomain = opts.trustDomain;
    this.binaries = opts.binaries;
    this.ownsDir = opts.dir === undefined;
    this.dir = opts.dir ?? mkdtempSync('/tmp/spire-');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.workloadSocket = path.join(this.dir, 'a.sock');
    this.serverSocket = path.join(this.dir, 's.sock');
    if (Buffer.byteLength(this.workloadSocket) > 100) {
      throw new SidecarError('dev_spire_failed', `socket path too long for a Unix socket (108-byte limit): ${this.workloadSocket}`);
    }
    this.startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  }

  /** Starts the server, makes a join token, starts the agent; resolves once both are healthy. Stops what it started on failure. */
  static async start(opts: SpireOptions): Promise<SpireDeployment> {
    const d = new SpireDeployment(opts);
    try {
      await d.startServer();
      await d.bootstrapAgent();
      await d.startAgent();
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  get serverPid(): number | undefined {
    return this.serverChild?.ended === undefined ? this.serverChild?.pid : undefined;
  }

  get agentPid(): number | undefined {
    return this.agentChild?.ended === undefined ? this.agentChild?.pid : undefined;
  }

  /** `spire-server <args> -socketPath <admin socket>`. */
  server(args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
    return run(this.binaries.server, [...args, '-socketPath', this.serverSocket], { timeoutMs, cwd: this.dir });
  }

  /** Creates a registration entry (parent: the agent); resolves with its ID. */
  async createEntry(spec: EntrySpec): Promise<string> {
    const args = ['entry', 'create', '-parentID', spec.parentId ?? this.agentId, ...entryArgs(spec), '-output', 'json'];
    if (spec.entryId) args.push('-entryID', spec.entryId);
    const result = firstResult(await this.server(args), `entry create ${spec.spiffeId}`);
    const id = result.entry?.id;
    if (!id) throw new SidecarError('dev_spire_failed', `entry create ${spec.spiffeId}: no entry ID in the answer`);
    return id;
  }

  /** Replaces every field of entry `id` with `spec`. */
  async updateEntry(id: string, spec: EntrySpec): Promise<void> {
    firstResult(await this.server(['entry', 'update', '-entryID', id, '-parentID', spec.parentId ?? this.agentId, ...entryArgs(spec), '-output', 'json']), `entry update ${id}`);
  }

  async deleteEntry(id: string): Promise<void> {
    firstResult(await this.server(['entry', 'delete', '-entryID', id, '-output', 'json']), `entry delete ${id}`);
  }

  /** The trust bundle, PEM (`spire-server bundle show`). */
  async bundlePem(): Promise<string> {
    return (await this.server(['bundle', 'show', '-format', 'pem'])).stdout;
  }

  /**
   * A node binary of its own under `dir/bin/<name>` (a hard link, or a copy across file
   * systems): a process started with it is `unix:path:<returned path>` to the agent.
   */
  linkedNode(name: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new SidecarError('dev_spire_failed', `bad workload name '${name}'`);
    const binDir = path.join(this.dir, 'bin');
    mkdirSync(binDir, { recursive: true });
    const target = path.join(binDir, name);
    if (existsSync(target)) return target;
    const node = realpathSync(process.execPath);
    try {
      linkSync(node, target);
    } catch {
      copyFileSync(node, target);
      chmodSync(target, 0o755);
    }
    return target;
  }

  /** Stops the agent (by pid); its data folder stays, so startAgent() resumes with the same SVID and key. */
  async stopAgent(): Promise<void> {
    await this.agentChild?.stop();
  }

  /** Starts (or restarts) the agent and waits until it is healthy. */
  async startAgent(): Promise<void> {
    if (this.agentChild && this.agentChild.ended === undefined) throw new SidecarError('dev_spire_failed', 'the agent is already running');
    const conf = path.join(this.dir, 'agent.conf');
    this.agentChild = new Child('spire-agent', this.binaries.agent, ['run', '-config', conf], { cwd: this.dir, logFile: path.join(this.dir, 'agent.log') });
    await this.untilHealthy(this.agentChild, this.binaries.agent, ['healthcheck', '-socketPath', this.workloadSocket]);
  }

  /** Stops the agent, then the server (each by pid), and removes the folder this deployment created; every caller waits for the same stop. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.agentChild?.stop();
      await this.serverChild?.stop();
      if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }

  private async startServer(): Promise<void> {
    const dataDir = path.join(this.dir, 'server');
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    let upstream: { certFile: string; keyFile: string; bundleFile: string } | undefined;
    if (this.opts.upstream) {
      upstream = { certFile: path.join(dataDir, 'upstream.pem'), keyFile: path.join(dataDir, 'upstream-key.pem'), bundleFile: path.join(dataDir, 'upstream-bundle.pem') };
      writeFileSync(upstream.certFile, this.opts.upstream.certPem, { mode: 0o600 });
      writeFileSync(upstream.keyFile, this.opts.upstream.keyPem, { mode: 0o600 });
      writeFileSync(upstream.bundleFile, this.opts.upstream.bundlePem, { mode: 0o600 });
    }
    this.serverPort = await freeLoopbackPort();
    const conf = path.join(this.dir, 'server.conf');
    writeFileSync(
      conf,
      serverConfig({
        trustDomain: this.trustDomain,
        dataDir,
        socketPath: this.serverSocket,
        port: this.serverPort,
        defaultX509SvidTtlSeconds: this.opts.defaultX509SvidTtlSeconds ?? 60,
        defaultJwtSvidTtlSeconds: this.opts.defaultJwtSvidTtlSeconds ?? 300,
        caTtlSeconds: this.opts.caTtlSeconds ?? 86_400,
        ...(upstream ? { upstream } : {}),
        logLevel: this.opts.logLevel ?? 'WARN',
      }),
      { mode: 0o600 },
    );
    this.serverChild = new Child('spire-server', this.binaries.server, ['run', '-config', conf], { cwd: this.dir, logFile: path.join(this.dir, 'server.log') });
    await this.untilHealthy(this.serverChild, this.binaries.server, ['healthcheck', '-socketPath', this.serverSocket]);
    this.opts.logger?.info({ pid: this.serverChild.pid, socket: this.serverSocket }, 'SPIRE server started');
  }

  private async bootstrapAgent(): Promise<void> {
    const bundleFile = path.join(this.dir, 'bootstrap.pem');
    writeFileSync(bundleFile, await this.bundlePem(), { mode: 0o600 });
    const out = (await this.server(['token', 'generate', '-ttl', '600'])).stdout;
    const token = /Token:\s*(\S+)/.exec(out)?.[1];
    if (!token) throw new SidecarError('dev_spire_failed', `token generate: no token in: ${out.slice(0, 200)}`);
    this.agentId = `spiffe://${this.trustDomain}/spire/agent/join_token/${token}`;
    const dataDir = path.join(this.dir, 'agent');
    // KeyManager "disk" writes into its folder but does not create it.
    mkdirSync(path.join(dataDir, 'keys'), { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(this.dir, 'agent.conf'),
      agentConfig({
        trustDomain: this.trustDomain,
        dataDir,
        socketPath: this.workloadSocket,
        serverPort: this.serverPort,
        trustBundleFile: bundleFile,
        joinToken: token,
        logLevel: this.opts.logLevel ?? 'WARN',
      }),
      { mode: 0o600 },
    );
  }

  /** Polls `<bin> healthcheck` until it passes; fails at once when the child exits, or after the start timeout. */
  private async untilHealthy(child: Child, bin: string, args: string[]): Promise<void> {
    const end = Date.now() + this.startTimeoutMs;
    let last = '';
    while (Date.now() < end) {
      if (child.ended !== undefined) throw new SidecarError('dev_spire_failed', `${child.name} stopped during start-up: ${child.describe()}`);
      try {
        await run(bin, args, { timeoutMs: 10_000, cwd: this.dir });
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(200);
    }
    throw new SidecarError('dev_spire_failed', `${child.name} not healthy after ${this.startTimeoutMs} ms (${last}): ${child.describe()}`);
  }
}
