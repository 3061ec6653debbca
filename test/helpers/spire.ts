/**
 * Real SPIRE in the tests: a server and agent (v1.13.3, built by scripts/build-spire.sh into a
 * cache outside the repository) and sidecar processes that each hold their own SPIRE identity.
 *
 *   const spire = await startSpire(t, { trustDomain: 'spire.test' });   // skips (fails in CI) when not built
 *   const svc = await startSidecarProcess(t, spire, 'svc', yaml);        // runs under its own node binary
 *   await spire.createEntry({ spiffeId, selectors: [`unix:path:${svc.node}`], x509SvidTtlSeconds: 30 });
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findSpireBinaries, spireBinDir, SPIRE_VERSION } from '../../src/mesh/spire/binaries.js';
import { SpireDeployment, type SpireOptions } from '../../src/mesh/spire/deployment.js';
import { skipFor, type Missing } from './needs.js';
import { repoRoot } from './paths.js';

interface Tap {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

/** Why real SPIRE cannot run here (with how to build it), or undefined. */
export function spireMissing(): Missing {
  return findSpireBinaries() ? undefined : `SPIRE v${SPIRE_VERSION} binaries not built in ${spireBinDir()} (run scripts/build-spire.sh)`;
}

/** The skip reason for a file of SPIRE tests (throws under CI=true), or false. */
export function spireSkip(): string | false {
  return skipFor(spireMissing());
}

/** Starts a SPIRE server and agent for one test; stopped (by pid) at its teardown. */
export async function startSpire(t: Tap, opts: Omit<SpireOptions, 'binaries'>): Promise<SpireDeployment> {
  const binaries = findSpireBinaries();
  if (!binaries) throw new Error(spireMissing());
  const spire = await SpireDeployment.start({ binaries, ...opts });
  t.teardown(() => spire.stop());
  return spire;
}

const cliMain = path.join(repoRoot, 'dist/src/cli/main.js');

/** An `attest-sidecar run` process under a node binary of its own (its SPIRE identity: `unix:path:<node>`). */
export class SidecarProcess {
  readonly name: string;
  readonly node: string;
  readonly dir: string;
  readonly config: string;
  private proc: ChildProcess | undefined;
  private tail = '';

  constructor(spire: SpireDeployment, name: string) {
    this.name = name;
    this.node = spire.linkedNode(name);
    this.dir = path.join(spire.dir, 'sc', name);
    mkdirSync(this.dir, { recursive: true });
    this.config = path.join(this.dir, 'sidecar.yaml');
  }

  /** The selector naming this process to the SPIRE agent. */
  get selector(): string {
    return `unix:path:${this.node}`;
  }

  get exited(): string | undefined {
    if (!this.proc || (this.proc.exitCode === null && this.proc.signalCode === null)) return undefined;
    return `${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.tail.trim() || '(no stderr)'}`;
  }

  get stderr(): string {
    return this.tail;
  }

  /** Writes the config (paths in it resolve against this sidecar's folder) and starts the process. */
  start(configYaml: string): void {
    writeFileSync(this.config, configYaml);
    this.tail = '';
    const p = spawn(this.node, [cliMain, 'run', '--config', this.config], { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
    p.stderr!.on('data', (d: Buffer) => {
      this.tail = (this.tail + d.toString('utf8')).slice(-8000);
    });
    p.on('error', (err) => {
      this.tail += `\nspawn failed: ${err.message}`;
    });
    this.proc = p;
  }

  /** SIGTERM, SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
}

/** A sidecar process for `name`, stopped at the test's teardown (start it with `.start(yaml)`). */
export function sidecarProcess(t: Tap, spire: SpireDeployment, name: string): SidecarProcess {
  const sc = new SidecarProcess(spire, name);
  t.teardown(() => sc.stop());
  return sc;
}

/**
 * Polls `f` until it returns a value other than undefined (errors count as undefined); rejects
 * after `ms` with `what` and `context()` (e.g. the children's logs).
 */
export async function until<T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 60_000, context: () => string = () => ''): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    let v: T | undefined;
    try {
      v = await f();
    } catch {
      v = undefined;
    }
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}\n${context()}`);
}

/** GET `url`; resolves with status and body, or undefined when the connection fails. */
export async function getStatus(url: string, init?: RequestInit): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return undefined;
  }
}
