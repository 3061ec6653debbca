/**
 * A service sidecar and an agent sidecar as separate `attest-sidecar run` processes (files
 * identity source, dev CA), for tests where a crash must really end a process: an unhandled
 * 'error' event in a child kills it, where in the test's own process tap would catch it.
 * Raw clients get certificates for any SPIFFE ID of the trust domain.
 */
import { readJsonLines } from './json-lines.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { DevCa } from '../../src/dev/ca.js';
import { EchoApp } from './mesh.js';
import { binPath } from './paths.js';
import { freePort } from './ports.js';

export const PROC_TD = 'proc.test';
export const serviceId = `spiffe://${PROC_TD}/service`;
export const agentId = (name: string) => `spiffe://${PROC_TD}/agent/${name}`;

export interface SidecarProcessesOptions {
  /** YAML lines (indented for the section) appended to `inbound:` / `outbound:`, e.g. limits. */
  inboundExtra?: string;
  outboundExtra?: string;
  /** Agents the policy allows `things.read` (the agent sidecar runs as the first). */
  agents?: string[];
  /** Top-level YAML lines appended to service.yaml / agent.yaml (e.g. `drain_timeout: 5s`). */
  serviceTop?: string;
  agentTop?: string;
  /** The app behind the service sidecar (default: an EchoApp). */
  app?: { start(): Promise<string>; close(): Promise<void> };
  /** Environment of both children (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

export class SidecarProcesses {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'attest-proc-'));
  app: { start(): Promise<string>; close(): Promise<void> } = new EchoApp();
  private env: NodeJS.ProcessEnv = process.env;
  ca!: DevCa;
  ports = { inbound: 0, adminIn: 0, adminInMtls: 0, outbound: 0, adminOut: 0 };
  readonly procs: ChildProcess[] = [];
  private readonly tails = new Map<ChildProcess, () => string>();

  static async start(opts: SidecarProcessesOptions = {}): Promise<SidecarProcesses> {
    const s = new SidecarProcesses();
    try {
      await s.init(opts);
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  get serviceAudit(): string {
    return path.join(this.dir, 'service-audit.log');
  }

  /** The service sidecar's audit records so far (parsed JSON lines). */
  auditRecords(): Record<string, unknown>[] {
    return readJsonLines(this.serviceAudit);
  }

  private async init(opts: SidecarProcessesOptions): Promise<void> {
    if (opts.app) this.app = opts.app;
    if (opts.env) this.env = opts.env;
    this.ca = await DevCa.create({ trustDomain: PROC_TD });
    const appUrl = await this.app.start();
    const agents = opts.agents ?? ['a1', 'a2'];
    writeFileSync(path.join(this.dir, 'bundle.pem'), this.ca.bundle().toPem());
    await this.writeSvid('service', serviceId);
    await this.writeSvid('agent', agentId(agents[0]!));
    const policy = agents.map((a) => `  - name: ${a}\n    spiffe_id: ${agentId(a)}\n    allowed_actions: [things.read]\n`).join('');
    writeFileSync(path.join(this.dir, 'policy.yaml'), `agents:\n${policy}`);
    this.ports = { inbound: await freePort(), adminIn: await freePort(), adminInMtls: await freePort(), outbound: await freePort(), adminOut: await freePort() };
    const p = this.ports;
    writeFileSync(
      path.join(this.dir, 'service.yaml'),
      `identity: { source: files, cert: service.pem, key: service-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:${p.inbound}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
${opts.inboundExtra ?? ''}
policy: policy.yaml
admin: { listen: 127.0.0.1:${p.adminIn}, mtls_listen: 127.0.0.1:${p.adminInMtls} }
state_dir: state-service
log: { level: warn, audit: ${this.serviceAudit} }
${opts.serviceTop ?? ''}
`,
    );
    writeFileSync(
      path.join(this.dir, 'agent.yaml'),
      `identity: { source: files, cert: agent.pem, key: agent-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${p.outbound}
  routes:
    - { name: things, upstream: "https://127.0.0.1:${p.inbound}", server_id: "${serviceId}" }
${opts.outboundExtra ?? ''}
admin: { listen: 127.0.0.1:${p.adminOut} }
state_dir: state-agent
log: { level: warn, audit: ${path.join(this.dir, 'agent-audit.log')} }
${opts.agentTop ?? ''}
`,
    );
    this.spawn('service.yaml');
    this.spawn('agent.yaml');
    for (const port of [p.adminIn, p.adminOut]) {
      await this.until(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), `readiness on ${port}`, 30_000);
    }
  }

  private async writeSvid(name: string, id: string): Promise<void> {
    const s = await this.ca.issueX509Svid(id, { ttlSeconds: 3600 });
    writeFileSync(path.join(this.dir, `${name}.pem`), s.certChainPem, { mode: 0o600 });
    writeFileSync(path.join(this.dir, `${name}-key.pem`), s.keyPem, { mode: 0o600 });
  }

  private spawn(config: string): void {
    const p = spawn(binPath, ['run', '--config', path.join(this.dir, config)], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    let tail = '';
    const keep = (d: Buffer) => {
      tail = (tail + d.toString('utf8')).slice(-8000);
    };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    this.tails.set(p, () => `${config} (exit ${p.exitCode ?? p.signalCode ?? 'none'}): ${tail.trim() || '(no stderr)'}`);
    this.procs.push(p);
  }

  /** True while every child runs; else a description of the ones that exited, with their stderr. */
  alive(): true | string {
    const dead = this.procs.filter((p) => p.exitCode !== null || p.signalCode !== null);
    return dead.length === 0 ? true : dead.map((p) => this.tails.get(p)!()).join('\n');
  }

  stderr(): string {
    return [...this.tails.values()].map((f) => f()).join('\n');
  }

  /** TLS options for a raw client presenting an SVID of `id` (issued now by the dev CA). */
  async clientTls(id: string): Promise<ConnectionOptions> {
    const s = await this.ca.issueX509Svid(id, { ttlSeconds: 3600 });
    return { host: '127.0.0.1', cert: s.certChainPem, key: s.keyPem, ca: this.ca.bundle().toPem(), rejectUnauthorized: false };
  }

  async until<T>(f: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const v = await f().catch(() => undefined);
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}\n${this.stderr()}`);
  }

  /** Scrapes the service sidecar's metrics and sums the samples matching `re`. */
  async metric(port: number, re: RegExp): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (re.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  }

  async close(): Promise<void> {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await this.app.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resolves with what the server sent once it closed the connection (bounded: rejects after `ms`). */
export function closed(socket: net.Socket, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

export function connectTls(port: number, options: ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...options, port });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed during the handshake')));
  });
}

export function connectPlain(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** One GET on an open connection; resolves with the status line, or 'closed' when the server closed it. */
export function requestOn(socket: net.Socket, requestPath: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) finish(got.slice(0, got.indexOf('\r\n')));
    };
    const onClose = () => finish('closed');
    const finish = (v: string) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(v);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => undefined);
    socket.write(`GET ${requestPath} HTTP/1.1\r\nHost: service\r\n\r\n`);
  });
}
