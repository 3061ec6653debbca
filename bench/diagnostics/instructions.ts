/**
 * Diagnostic (not part of `npm run bench`): instructions per request of one proxy, bare vs
 * sidecar, counted by valgrind's callgrind. On a shared VM CPU time drifts between identical
 * runs; instruction counts do not depend on what the neighbours do, so this is the
 * tool for telling whether a change to the request path made it cheaper.
 *
 *   node dist/bench/diagnostics/instructions.js [--side outbound|inbound] [--requests N] [--warmup N]
 *
 * The measured proxy of each pair runs under callgrind with instrumentation off; after a warm-up
 * (JIT tiering, over two sets of connections) and a pause (the audit sink's last batch drains),
 * counting is switched on for exactly N requests and the main thread's total is divided by N.
 * The kernel's work (syscalls, loopback TCP) is not counted; neither are other threads (V8's
 * compiler, the libuv pool).
 * Remaining variance comes from JIT tiering decisions: repeat a run before trusting a 5% change.
 * Needs valgrind (Debian package `valgrind`); a run takes about two minutes. CALLGRIND_KEEP=1 keeps
 * the dumps for callgrind_annotate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { killAll, repoRoot, stopChild, type Child } from '../lib.js';
import { BENCH_PATH, ROUTE, startPairs, writeBenchFiles, type ProxyName } from '../setup.js';

const { values } = parseArgs({
  options: { side: { type: 'string', default: 'outbound' }, requests: { type: 'string', default: '2000' }, warmup: { type: 'string', default: '6000' } },
});
const side = values.side === 'inbound' ? 'inbound' : 'outbound';
const autocannon = createRequire(import.meta.url)('autocannon') as (o: object) => Promise<{ non2xx: number; errors: number }>;
const outDir = mkdtempSync(path.join(tmpdir(), 'attest-callgrind-'));

/** Runs node under callgrind with instrumentation off until `callgrind_control -i on`. */
const CALLGRIND = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${outDir}/cg.%p`];

const control = (pid: number, ...args: string[]) => execFileSync('callgrind_control', [...args, String(pid)], { stdio: 'ignore' });

/** Main-thread instructions in the dump named `label` (thread 1 is the event loop). */
function mainThreadInstructions(pid: number, label: string): number {
  for (const f of readdirSync(outDir)) {
    if (!f.startsWith(`cg.${pid}.`) || !f.endsWith('-01')) continue;
    const text = readFileSync(path.join(outDir, f), 'utf8');
    if (text.includes(`Trigger: Client Request: ${label}`) || text.includes(`dump ${label}`)) return Number(/\nsummary: (\d+)/.exec(text)?.[1] ?? NaN);
  }
  throw new Error(`no callgrind dump '${label}' for pid ${pid} in ${outDir}`);
}

async function main(): Promise<void> {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is not installed (apt-get install valgrind)');
  }
  const f = await writeBenchFiles();
  const root = repoRoot();
  const p = f.ports;
  const url = (port: number, suffix = '') => `http://127.0.0.1:${port}${suffix}`;
  const measured: ProxyName[] = side === 'inbound' ? ['ref-in', 'sc-in'] : ['ref-out', 'sc-out'];
  let procs: Child[] = [];
  try {
    const pairs = await startPairs(f, root, { wrapper: (name) => (measured.includes(name) ? CALLGRIND : []), timeoutMs: 300_000 });
    procs = pairs.procs;
    const { refIn, refOut, scIn, scOut } = pairs;
    const n = Number(values.requests);
    const perRequest: Record<string, number> = {};
    for (const [label, port, counted] of [['bare', p.refOutbound, side === 'inbound' ? refIn : refOut], ['sidecar', p.agentOutbound, side === 'inbound' ? scIn : scOut]] as const) {
      const load = (amount: number) => autocannon({ url: url(port, BENCH_PATH), connections: 8, amount, timeout: 60, headers: { host: ROUTE } });
      // Two warm-ups: when the first load's connections close, V8 deprecates the socket maps its
      // code was optimised for, and the next load's new connections deoptimise the HTTP path
      // once ("wrong map"; bare proxy and sidecar alike). That wave must fall before counting.
      await load(Number(values.warmup) / 2);
      await load(Number(values.warmup) / 2);
      await new Promise((r) => setTimeout(r, 4000));
      control(counted.pid, '-z');
      control(counted.pid, '-i', 'on');
      const r = await load(n);
      control(counted.pid, '-d', label);
      control(counted.pid, '-i', 'off');
      if (r.non2xx || r.errors) throw new Error(`${label}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      perRequest[label] = mainThreadInstructions(counted.pid, label) / n;
      process.stdout.write(`${side} ${label.padEnd(8)} ${Math.round(perRequest[label]!).toLocaleString('en')} instructions per request (main thread)\n`);
    }
    process.stdout.write(`${side} sidecar/bare: ${(perRequest.sidecar! / perRequest.bare!).toFixed(3)}\n`);
  } finally {
    await Promise.all(procs.map((c) => stopChild(c)));
    killAll();
    rmSync(f.dir, { recursive: true, force: true }); // holds private keys
    if (process.env.CALLGRIND_KEEP) process.stdout.write(`callgrind output kept in ${outDir}\n`);
    else rmSync(outDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`instructions: ${(err as Error).message}\n`);
  killAll();
  rmSync(outDir, { recursive: true, force: true });
  process.exitCode = 1;
});
