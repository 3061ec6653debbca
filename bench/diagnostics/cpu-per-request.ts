/**
 * Diagnostic (not part of `npm run bench`): CPU time per request of each proxy process, from
 * /proc/PID/stat, for the bare pair and the sidecar pair under the same load. Throughput at high
 * concurrency on a 2-core machine is bounded by exactly this.
 *   node dist/bench/diagnostics/cpu-per-request.js [--requests N] [--connections C] [--rounds R]
 */
import { readFileSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { killAll, repoRoot, stopChild, type Child } from '../lib.js';
import { BENCH_PATH, ROUTE, startPairs, writeBenchFiles } from '../setup.js';

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '10000' }, connections: { type: 'string', default: '32' }, rounds: { type: 'string', default: '5' } },
});
const autocannon = createRequire(import.meta.url)('autocannon') as (o: object) => Promise<unknown>;
const TICK = 100; // USER_HZ on Linux

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICK; // utime + stime
}

async function load(url: string, amount: number, connections: number): Promise<void> {
  await autocannon({ url, connections, amount, headers: { host: ROUTE } });
}

async function main(): Promise<void> {
  const f = await writeBenchFiles();
  const root = repoRoot();
  const p = f.ports;
  const url = (port: number, suffix = '') => `http://127.0.0.1:${port}${suffix}`;
  let procs: Child[] = [];
  try {
    const started = await startPairs(f, root);
    procs = started.procs;
    const { refIn, refOut, scIn, scOut } = started;
    const n = Number(values.requests);
    const c = Number(values.connections);
    const pairs = [['bare pair', p.refOutbound, refOut, refIn], ['sidecar pair', p.agentOutbound, scOut, scIn]] as const;
    for (const [, port] of pairs) await load(url(port, BENCH_PATH), 2000, c); // warm up
    // Alternate the pairs: this machine's speed drifts, so only back-to-back runs compare.
    const ratios: number[] = [];
    for (let round = 0; round < Number(values.rounds); round++) {
      const perPair: number[] = [];
      for (const [name, port, out, inn] of pairs) {
        const before = cpuMs(out.pid) + cpuMs(inn.pid);
        await load(url(port, BENCH_PATH), n, c);
        const us = ((cpuMs(out.pid) + cpuMs(inn.pid) - before) * 1000) / n;
        perPair.push(us);
        process.stdout.write(`round ${round + 1} ${name.padEnd(13)} ${us.toFixed(0).padStart(5)} us CPU per request (both proxies)\n`);
      }
      ratios.push(perPair[1]! / perPair[0]!);
    }
    ratios.sort((x, y) => x - y);
    const m = await (await fetch(url(p.serviceAdmin, '/metrics'))).text();
    process.stdout.write(`sidecar/bare CPU per request, median of ${ratios.length} paired rounds: ${ratios[ratios.length >> 1]!.toFixed(2)}\n`);
    process.stdout.write(`inbound sidecar connections accepted (handshakes): ${/attest_sidecar_inbound_connections_total\S* (\d+)/.exec(m)?.[1]}\n`);
  } finally {
    await Promise.all(procs.map((c) => stopChild(c)));
    killAll();
    rmSync(f.dir, { recursive: true, force: true }); // holds private keys
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`cpu-per-request: ${(err as Error).stack}\n`);
  killAll();
  process.exitCode = 1;
});
