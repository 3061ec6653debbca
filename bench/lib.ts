/**
 * Small helpers shared by the benchmark: free ports, child processes that are always killed on
 * exit, readiness polling over HTTP, and RSS sampling from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding package.json (walks up from this compiled file). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      readFileSync(path.join(dir, 'package.json'));
      return dir;
    } catch {
      const up = path.dirname(dir);
      if (up === dir) throw new Error('bench: package.json not found above ' + fileURLToPath(import.meta.url));
      dir = up;
    }
  }
}

/** Progress goes to stderr so `--json` keeps stdout to the one result object. */
export function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** A loopback port that was free a moment ago (the OS picks it; small race accepted). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = addr && typeof addr === 'object' ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('bench: no port assigned'))));
    });
  });
}

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Last lines of stderr/stdout, for error messages when a child dies. */
  output(): string;
  /** Rejects as soon as the child exits (used to race readiness polling). */
  readonly exited: Promise<never>;
}

const children = new Set<ChildProcess>();
let cleanupInstalled = false;

/** Kills every child still running; safe to call more than once. */
export function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  children.clear();
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      killAll();
      process.stderr.write(`[bench] ${sig}: children killed\n`);
      process.exit(130);
    });
  }
}

/**
 * `node` arguments that run the sidecar CLI as its executable does: the Node flags on
 * bin/attest-sidecar's `#!/usr/bin/env [-S] node ...` line (today the fixed young generation),
 * then the script, then `args`. The benchmark measures the sidecar as deployed, with the node
 * running the benchmark.
 */
export function sidecarArgs(root: string, ...args: string[]): string[] {
  const bin = path.join(root, 'bin', 'attest-sidecar');
  const shebang = readFileSync(bin, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env\s+(?:-S\s+)?node((?:\s+--[\w-]+(?:=\S+)?)*)\s*$/.exec(shebang);
  if (!m) throw new Error(`bench: cannot read node flags from ${bin}: ${shebang}`);
  return [...m[1]!.split(/\s+/).filter(Boolean), bin, ...args];
}

/**
 * Spawns `[WRAPPER...] node ARGS` with stdout/stderr captured (last 4 KiB kept). BENCH_NODE_ARGS adds node
 * flags to every server (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them).
 */
export function spawnNode(name: string, args: string[], cwd: string, wrapper: readonly string[] = []): Child {
  installCleanup();
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // `wrapper` runs node under another program (e.g. valgrind) that execs it with our arguments.
  const argv = [...wrapper, process.execPath, ...extra, ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  if (proc.pid === undefined) throw new Error(`bench: could not spawn ${name}`);
  children.add(proc);
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<never>((_, reject) => {
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}):\n${tail.trim()}`));
    });
  });
  exited.catch(() => undefined); // observed via race(); never an unhandled rejection
  return { name, proc, pid: proc.pid, output: () => tail, exited };
}

/** Stops a child with SIGTERM, then SIGKILL after a grace period. */
export async function stopChild(child: Child, graceMs = 2000): Promise<void> {
  const p = child.proc;
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

function httpStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls URL until it answers 200, one of the children exits, or the deadline passes. */
export async function waitForOk(children: Child[], url: string, headers: Record<string, string> = {}, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    const status = await Promise.race([httpStatus(url, headers).catch((e: Error) => e), ...children.map((c) => c.exited)]);
    if (status === 200) return;
    last = status instanceof Error ? status.message : `HTTP ${status}`;
    await new Promise((r) => setTimeout(r, 100));
  }
  const outputs = children.map((c) => `--- ${c.name}:\n${c.output().trim()}`).join('\n');
  throw new Error(`not ready at ${url} within ${timeoutMs} ms (last: ${last})\n${outputs}`);
}

/** VmRSS, RssFile and RssAnon of a process in bytes (NaN where the kernel lacks a field), or undefined once it is gone. */
export function rssParts(pid: number): { rss: number; file: number; anon: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    return Number.isFinite(rss) ? { rss, file: kb('RssFile'), anon: kb('RssAnon') } : undefined;
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in bytes (VmRSS), or undefined when it is gone. */
export function rssBytes(pid: number): number | undefined {
  return rssParts(pid)?.rss;
}

/**
 * CPU time a process has run so far, all its threads together, in ns: the scheduler's own
 * count (/proc/PID/task/TID/schedstat), not /proc/PID/stat's 10 ms ticks, which a 2 s run of a
 * proxy using a second of CPU would read to about 1%. A thread that exits takes its time with it;
 * node's threads (the thread pool, V8's helpers) live as long as the process. Undefined where
 * /proc has no such files (not Linux, or the process is gone).
 */
export function processCpuNs(pid: number | 'self'): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread exited between the listing and the read.
    }
  }
  return Number.isFinite(ns) ? ns : undefined;
}

/** Samples the max RSS of some processes every intervalMs until stopped. */
export class RssSampler {
  readonly max = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  /** `onSample` sees every sample (e.g. PeakMemory, which explains new highs). */
  constructor(
    private readonly procs: { name: string; pid: number }[],
    private readonly intervalMs = 100,
    private readonly onSample?: (name: string, pid: number, rss: number) => void,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  private sample(): void {
    for (const p of this.procs) {
      const v = rssBytes(p.pid);
      if (v === undefined) continue;
      if (v > (this.max.get(p.name) ?? 0)) this.max.set(p.name, v);
      this.onSample?.(p.name, p.pid, v);
    }
  }
}

/** The machine's CPU time so far (all CPUs, clock ticks): what the hypervisor took, and in all. */
export interface CpuTimes {
  steal: number;
  total: number;
}

/**
 * Parses the aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq
 * steal (guest time is already inside user). Undefined when absent (not Linux) or malformed.
 */
export function parseCpuTimes(stat: string): CpuTimes | undefined {
  const m = /^cpu((?: +\d+){8,})/m.exec(stat);
  if (!m) return undefined;
  const f = m[1]!.trim().split(/ +/).slice(0, 8).map(Number);
  return { steal: f[7]!, total: f.reduce((a, b) => a + b, 0) };
}

export function cpuTimes(): CpuTimes | undefined {
  try {
    return parseCpuTimes(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** Share of the CPU time between two readings that the hypervisor gave to other guests. */
export function stealBetween(from: CpuTimes | undefined, to: CpuTimes | undefined): number | undefined {
  if (!from || !to || to.total <= from.total) return undefined;
  return (to.steal - from.steal) / (to.total - from.total);
}

/** Median of a non-empty list (mean of the middle two for even lengths). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of an ascending-sorted array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}
