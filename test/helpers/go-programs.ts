/**
 * Builds the tests' Go programs once per source version: the binaries go to
 * <cache>/<set>/<hash of go.mod, go.sum and the .go files>/, where <cache> is the project's cache
 * root ($ATTEST_SIDECAR_CACHE, else $XDG_CACHE_HOME/attest-sidecar, else ~/.cache/attest-sidecar:
 * outside the repo, shared by checkouts), so a warm run (or CI with that folder cached) never
 * rebuilds. A build goes to a private folder first and is renamed into place, so concurrent test
 * files never see half a build: whoever renames second reuses the first one's binaries.
 *
 *   const skip = skipFor(goProgramsMissing(SPIFFE_PEERS));
 *   const { bins } = await buildGoPrograms(SPIFFE_PEERS);   // bins['spiffe-client'], ...
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from '../../src/mesh/spire/binaries.js';
import { repoRoot } from './paths.js';
import { toolsMissing, type Missing } from './needs.js';

const run = promisify(execFile);

export interface GoProgramSet {
  /** Cache folder name. */
  name: string;
  /** Source folder, relative to the repo root. */
  dir: string;
  /** Binary name -> what `go build` gets in `dir` (a package path like ./x, or a .go file). */
  programs: Record<string, string>;
}

/** go-spiffe v2.9.0 peers: an mTLS client (also JWT-SVID fetch/validate) and an mTLS echo server. */
export const SPIFFE_PEERS: GoProgramSet = {
  name: 'go-peers',
  dir: 'test/go/spiffe-peers',
  programs: { 'spiffe-client': './spiffe-client', 'spiffe-server': './spiffe-server' },
};

/** A net/http client that finds its proxy in HTTP_PROXY. */
export const PROXY_CLIENT: GoProgramSet = { name: 'go-proxy-client', dir: 'test/go/proxy-client', programs: { 'proxy-client': 'main.go' } };

/** What provides `go` (go-spiffe v2.9.0 needs Go >= 1.24). */
const GO_PACKAGE = 'golang-go (Go >= 1.24; or the go.dev tarball in /usr/local/go)';

/** Cold builds download modules and compile gRPC: minutes on a busy 2-core machine. */
export const GO_BUILD_TIMEOUT_MS = 600_000;

/** The `go` command: on PATH, else the official tarball's location. */
export function goCommand(): string | undefined {
  if (toolsMissing(['go'], '') === undefined) return 'go';
  const fallback = '/usr/local/go/bin/go';
  try {
    accessSync(fallback, constants.X_OK);
    return fallback;
  } catch {
    return undefined;
  }
}

function sourceFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const name = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(dir, name));
    else if (e.isFile() && (e.name.endsWith('.go') || e.name === 'go.mod' || e.name === 'go.sum')) out.push(name);
  }
  return out.sort();
}

/** Where this version of the set's binaries live (present or not). */
export function goProgramsDir(set: GoProgramSet): string {
  const src = path.join(repoRoot, set.dir);
  const hash = createHash('sha256');
  for (const file of sourceFiles(src)) hash.update(`${file}\0`).update(readFileSync(path.join(src, file))).update('\0');
  hash.update(JSON.stringify(set.programs));
  return path.join(cacheRoot(), set.name, hash.digest('hex').slice(0, 16));
}

function binsIn(set: GoProgramSet, dir: string): Record<string, string> {
  return Object.fromEntries(Object.keys(set.programs).map((bin) => [bin, path.join(dir, bin)]));
}

function complete(set: GoProgramSet, dir: string): boolean {
  return Object.values(binsIn(set, dir)).every((bin) => existsSync(bin));
}

/** Undefined when the binaries are cached or can be built; else why not (for skipFor). */
export function goProgramsMissing(set: GoProgramSet): Missing {
  if (complete(set, goProgramsDir(set))) return undefined;
  return goCommand() ? undefined : toolsMissing(['go'], GO_PACKAGE);
}

export interface GoPrograms {
  /** Binary name -> absolute path. */
  bins: Record<string, string>;
  /** Whether this call compiled them, and how long that took. */
  built: boolean;
  buildMs: number;
}

const pending = new Map<string, Promise<GoPrograms>>();

/** The set's binaries, built now only when this source version is not in the cache. */
export function buildGoPrograms(set: GoProgramSet): Promise<GoPrograms> {
  const dir = goProgramsDir(set);
  let p = pending.get(dir);
  if (!p) {
    p = build(set, dir);
    pending.set(dir, p);
    p.catch(() => pending.delete(dir));
  }
  return p;
}

async function build(set: GoProgramSet, dir: string): Promise<GoPrograms> {
  if (complete(set, dir)) return { bins: binsIn(set, dir), built: false, buildMs: 0 };
  const go = goCommand();
  if (!go) throw new Error(toolsMissing(['go'], GO_PACKAGE));
  mkdirSync(path.dirname(dir), { recursive: true });
  // A folder missing a binary (removed by hand) would block the rename below.
  if (existsSync(dir) && !complete(set, dir)) rmSync(dir, { recursive: true, force: true });
  const tmp = mkdtempSync(`${dir}.building-`);
  const started = Date.now();
  try {
    for (const [bin, target] of Object.entries(set.programs)) {
      try {
        await run(go, ['build', '-buildvcs=false', '-o', path.join(tmp, bin), target], {
          cwd: path.join(repoRoot, set.dir),
          timeout: GO_BUILD_TIMEOUT_MS,
          killSignal: 'SIGKILL',
          maxBuffer: 4 * 1024 * 1024,
        });
      } catch (err) {
        const e = err as Error & { stderr?: string };
        throw new Error(`go build of ${set.dir}/${target} failed: ${e.message}\n${e.stderr ?? ''}`);
      }
    }
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process renamed its build into place first: use that one.
      if (!complete(set, dir)) throw err;
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return { bins: binsIn(set, dir), built: true, buildMs: Date.now() - started };
}

/** One stdout JSON line of a Go peer (`type` says which: svid, response, error, jwt_svid, jwt_valid, listening). */
export type PeerLine = Record<string, unknown> & { type: string };

export interface ClientRun {
  /** Exit code (test/go/spiffe-peers/spiffe-client/main.go lists them). */
  code: number;
  lines: PeerLine[];
  stderr: string;
}

function parseLines(stdout: string): PeerLine[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as PeerLine);
}

/** Runs spiffe-client (asynchronously: sidecars may answer from this process) with a bound. */
export async function runSpiffeClient(bin: string, args: string[], socket: string, timeoutMs = 120_000): Promise<ClientRun> {
  const env = { ...process.env, SPIFFE_ENDPOINT_SOCKET: socket };
  try {
    const { stdout, stderr } = await run(bin, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, lines: parseLines(stdout), stderr };
  } catch (err) {
    const e = err as Error & { code?: number | string; stdout?: string; stderr?: string; killed?: boolean };
    if (typeof e.code !== 'number') throw new Error(`spiffe-client ${args[0]} did not finish: ${e.message}\n${e.stderr ?? ''}`);
    return { code: e.code, lines: parseLines(e.stdout ?? ''), stderr: e.stderr ?? '' };
  }
}

/** spiffe-server as a child process; `stop()` sends SIGTERM and resolves with its exit code. */
export class SpiffeServer {
  readonly address: string;
  readonly spiffeId: string;
  private stderrTail = '';

  private constructor(
    private readonly child: ChildProcess,
    listening: PeerLine,
  ) {
    this.address = String(listening.address);
    this.spiffeId = String(listening.spiffe_id);
  }

  /** Starts it and waits (bounded) for its `listening` line. */
  static async start(bin: string, args: string[], socket: string, timeoutMs = 90_000): Promise<SpiffeServer> {
    const child = spawn(bin, args, { env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: socket }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-8000)));
    let stdout = '';
    const listening = await new Promise<PeerLine>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`spiffe-server not listening after ${timeoutMs} ms`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`${e.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
      };
      child.once('error', fail);
      child.once('exit', (code, signal) => fail(new Error(`spiffe-server exited (${code ?? signal})`)));
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
        // Complete lines only: a chunk may end mid-line.
        const line = stdout.split('\n').slice(0, -1).find((l) => l.includes('"listening"'));
        if (!line) return;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
        child.on('error', () => undefined);
        resolve(JSON.parse(line) as PeerLine);
      });
    });
    const server = new SpiffeServer(child, listening);
    child.stderr!.on('data', (d: Buffer) => (server.stderrTail = (server.stderrTail + d.toString('utf8')).slice(-8000)));
    return server;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** What it logged on stderr since it started listening (refused handshakes are `tls_error` lines). */
  stderr(): string {
    return this.stderrTail;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `ms`; resolves with the exit code (or signal). */
  stop(ms = 20_000): Promise<number | string> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c.exitCode ?? c.signalCode!);
    return new Promise((resolve) => {
      const timer = setTimeout(() => c.kill('SIGKILL'), ms);
      c.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve(code ?? signal!);
      });
      c.kill('SIGTERM');
    });
  }
}
