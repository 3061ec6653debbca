/**
 * Diagnostic (not part of `npm run bench`): bytes allocated, and bytes that survive V8's
 * young-generation collection, per request in each proxy, bare vs sidecar, by allocation site.
 * Like instructions.ts, this does not depend on what the VM's neighbours do: it counts bytes, not
 * time. It answers "why does the sidecar collect garbage more often than the bare pair" (more
 * allocated per request) and "why does its old generation grow under load" (more surviving).
 *
 *   node dist/bench/diagnostics/allocations.js [--requests N] [--warmup N] [--top K]
 *
 * Each proxy runs with heap-sampler.js (beside this file) preloaded. After a warm-up, every proxy samples
 * while its pair serves N requests: first all allocations, then only objects that outlived the
 * young generation. Sampling is statistical (one sample per 1 KB allocated, 256 B surviving):
 * repeat a run before trusting a difference of a few percent.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAll, repoRoot, stopChild, type Child } from '../lib.js';
import { BENCH_PATH, ROUTE, startPairs, writeBenchFiles } from '../setup.js';

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '15000' }, warmup: { type: 'string', default: '5000' }, top: { type: 'string', default: '12' } },
});
const here = path.dirname(fileURLToPath(import.meta.url));
const autocannon = createRequire(import.meta.url)('autocannon') as (o: object) => Promise<{ non2xx: number; errors: number }>;
const outDir = mkdtempSync(path.join(tmpdir(), 'attest-allocations-'));

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** Sampled bytes by allocating function (`name file:line`), and their total. */
function bySite(file: string): { sites: Map<string, number>; total: number } {
  const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: ProfileNode }).head;
  const sites = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode) => {
    if (n.selfSize) {
      const cf = n.callFrame;
      const site = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
      sites.set(site, (sites.get(site) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(head);
  return { sites, total };
}

function report(side: string, mode: string, bare: Child, sidecar: Child, n: number, top: number): string {
  const b = bySite(path.join(outDir, `${bare.pid}-${mode}.json`));
  const s = bySite(path.join(outDir, `${sidecar.pid}-${mode}.json`));
  const perReq = (x: number) => (x / n).toFixed(0).padStart(7);
  const rows = [...new Set([...b.sites.keys(), ...s.sites.keys()])]
    .map((k) => ({ k, bare: b.sites.get(k) ?? 0, sidecar: s.sites.get(k) ?? 0 }))
    .sort((x, y) => Math.abs(y.sidecar - y.bare) - Math.abs(x.sidecar - x.bare))
    .slice(0, top);
  return [
    `${side}, bytes ${mode} per request:    bare ${perReq(b.total)}   sidecar ${perReq(s.total)}`,
    `   bare sidecar  (sites that differ most)`,
    ...rows.map((r) => `${perReq(r.bare)} ${perReq(r.sidecar)}  ${r.k}`),
    '',
  ].join('\n');
}

/** Waits until every proxy has written its `mode` profile; a proxy that did not says why (its output). */
async function profilesWritten(proxies: Child[], mode: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const c of proxies) {
    const file = path.join(outDir, `${c.pid}-${mode}.json`);
    while (!existsSync(file)) {
      if (Date.now() > deadline || c.proc.exitCode !== null) {
        throw new Error(`${c.name} wrote no ${mode} heap profile within ${timeoutMs / 1000} s:\n${c.output().trim()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function main(): Promise<void> {
  const f = await writeBenchFiles();
  const root = repoRoot();
  const p = f.ports;
  const url = (port: number, suffix = '') => `http://127.0.0.1:${port}${suffix}`;
  process.env.ATTEST_HEAP_SAMPLER_DIR = outDir; // spawnNode passes the environment on
  const sampled = ['--expose-gc', '--import', path.join(here, 'heap-sampler.js')];
  let procs: Child[] = [];
  try {
    const pairs = await startPairs(f, root, { nodeArgs: () => sampled });
    procs = pairs.procs;
    const { refIn, refOut, scIn, scOut } = pairs;
    const n = Number(values.requests);
    const load = async (port: number, amount: number) => {
      const r = await autocannon({ url: url(port, BENCH_PATH), connections: 32, amount, timeout: 60, headers: { host: ROUTE } });
      if (r.non2xx || r.errors) throw new Error(`${r.non2xx} non-2xx, ${r.errors} errors`);
    };
    for (const port of [p.refOutbound, p.agentOutbound]) await load(port, Number(values.warmup));
    const proxies = [refIn, refOut, scIn, scOut];
    const signal = () => {
      for (const c of proxies) c.proc.kill('SIGUSR2');
    };
    for (const mode of ['allocated', 'survived']) {
      signal();
      await new Promise((r) => setTimeout(r, 500)); // sampling started
      for (const port of [p.refOutbound, p.agentOutbound]) await load(port, n);
      signal();
      await profilesWritten(proxies, mode);
    }
    const top = Number(values.top);
    for (const mode of ['allocated', 'survived']) {
      process.stdout.write(report('inbound', mode, refIn, scIn, n, top));
      process.stdout.write(report('outbound', mode, refOut, scOut, n, top));
    }
  } finally {
    await Promise.all(procs.map((c) => stopChild(c)));
    killAll();
    rmSync(f.dir, { recursive: true, force: true }); // holds private keys
    rmSync(outDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`allocations: ${(err as Error).message}\n`);
  killAll();
  rmSync(outDir, { recursive: true, force: true });
  process.exitCode = 1;
});
