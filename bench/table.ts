/**
 * The benchmark report as a table for people (`npm run bench` without --json): the scenarios,
 * the paired ratios, the A/A control, CPU per request, memory, verification and connection cost,
 * steal, and the targets. The numbers come from report.ts; nothing is computed here but layout.
 */
import { median } from './lib.js';
import type { MemoryBreakdown } from './peak-memory.js';
import { BALANCED_ROUNDS, HIGH_STEAL, SCENARIO_LABEL, SCENARIO_LETTER, type BenchReport, type Scenario, type ScenarioResult } from './report.js';

/** One line on the hypervisor's share of the CPU during the measured runs (Linux only). */
export function stealSummary(results: readonly ScenarioResult[]): string | undefined {
  const all = results.flatMap((r) => r.rounds.flatMap((x) => (x.steal !== undefined ? [x.steal] : [])));
  if (all.length === 0) return undefined;
  const high = all.filter((v) => v > HIGH_STEAL).length;
  const line = `VM steal during the measured runs (CPU time the hypervisor gave other guests): median ${fmt(median(all) * 100, 1)}%, max ${fmt(Math.max(...all) * 100, 1)}%`;
  if (high === 0) return line;
  return `${line}\n  WARNING: ${high} of ${all.length} scenario rounds lost over ${HIGH_STEAL * 100}% of the CPU to other guests; their req/s are not comparable. Ratios leave those rounds out while at least half the rounds remain (see "left out" above); rerun when the machine is quieter.`;
}

/** `121.4 = files 44.6 + anon 76.8 (V8 57.3: new 32.0, old 22.0, code 2.8; external 3.6)`, MiB. */
export function describePeak(b: MemoryBreakdown): string {
  const spaces = Object.entries(b.v8)
    .sort((x, y) => y[1] - x[1])
    .map(([space, mib]) => `${space} ${fmt(mib, 1)}`)
    .join(', ');
  const external = b.externalMiB !== undefined ? `; external ${fmt(b.externalMiB, 1)}` : '';
  return `${fmt(b.rssMiB, 1)} = files ${fmt(b.fileMiB, 1)} + anon ${fmt(b.anonMiB, 1)} (V8 ${fmt(b.v8TotalMiB, 1)}: ${spaces}${external})`;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** Wide enough for the longest scenario label. */
const LABEL_WIDTH = 32;

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

export function renderTable(r: BenchReport): string {
  const lines: string[] = [];
  const s = r.settings;
  lines.push(
    `attest-sidecar benchmark: ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${s.rounds} round(s)${s.rounds % BALANCED_ROUNDS === 0 ? ' in balanced orders' : ''}${(r.instances?.length ?? 0) > 1 ? ', each on servers started for it' : ''}, each scenario forwards and back (2 x ~${s.durationSeconds} s, request counts${s.settleSeconds > 0 ? `, each after ~${s.settleSeconds} s uncounted` : ''}), medians over rounds`,
    '',
    `${pad('scenario', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('req/s', 10, true)}${pad('p50 ms', 9, true)}${pad('p99 ms', 9, true)}${pad('errors', 8, true)}${pad('non2xx', 8, true)}${pad('steal %', 9, true)}`,
  );
  for (const res of r.results) {
    lines.push(
      `${pad(SCENARIO_LABEL[res.scenario], LABEL_WIDTH)}${pad(String(res.connections), 6, true)}${pad(fmt(res.reqPerSec, 0), 10, true)}` +
        `${pad(fmt(res.p50Ms, 3), 9, true)}${pad(fmt(res.p99Ms, 3), 9, true)}${pad(String(res.errors), 8, true)}${pad(String(res.non2xx), 8, true)}` +
        `${pad(res.steal !== undefined ? fmt(res.steal * 100, 1) : 'n/a', 9, true)}`,
    );
  }
  lines.push(
    '',
    `${pad('ratios', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('c/a rps', 10, true)}${pad('c/b rps', 10, true)}${pad('+p50 b', 9, true)}${pad('+p50 c', 9, true)}${pad('c/b per round', 16, true)}`,
  );
  for (const q of r.ratios) {
    const spread = q.cOverBPerRound.length ? `${fmt(Math.min(...q.cOverBPerRound))}-${fmt(Math.max(...q.cOverBPerRound))}` : 'n/a';
    lines.push(
      `${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.reqPerSec.cOverA), 10, true)}${pad(fmt(q.reqPerSec.cOverB), 10, true)}` +
        `${pad(fmt(q.addedP50Ms.reference, 3), 9, true)}${pad(fmt(q.addedP50Ms.sidecar, 3), 9, true)}${pad(spread, 16, true)}`,
    );
  }
  const left = r.ratios.filter((q) => q.cOverBStolenRounds.left > 0);
  for (const q of left) {
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}  left out: ${q.cOverBStolenRounds.left} of ${q.cOverBStolenRounds.of} rounds (over ${HIGH_STEAL * 100}% steal in b or c)`);
  }
  lines.push('', `${pad('A/A control', LABEL_WIDTH)}${pad('conns', 6, true)}${pad("b'/b rps", 10, true)}${pad("b'/b per round", 16, true)}   (two identical bare pairs: the noise in a ratio of pairs)`);
  for (const q of r.ratios) {
    const spread = q.control.perRound.length ? `${fmt(Math.min(...q.control.perRound))}-${fmt(Math.max(...q.control.perRound))}` : 'n/a';
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.control.overB), 10, true)}${pad(spread, 16, true)}`);
  }
  if (r.ratios.some((q) => q.cpu)) {
    lines.push(
      '',
      `${pad('CPU per request', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('b us', 8, true)}${pad("b' us", 8, true)}${pad('c us', 8, true)}${pad('c/b', 7, true)}${pad("b'/b", 7, true)}${pad('c/b per round', 16, true)}${pad('raw c/b', 9, true)}${pad("b'/b", 7, true)}`,
    );
    for (const q of r.ratios) {
      if (!q.cpu) continue;
      const us = (sc: Scenario) => r.results.find((x) => x.scenario === sc && x.connections === q.connections)?.cpuUsPerRequest?.proxies;
      const opt = (v: number | undefined) => (v === undefined ? 'n/a' : fmt(v, 1));
      lines.push(
        `${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(opt(us('reference')), 8, true)}${pad(opt(us('control')), 8, true)}${pad(opt(us('sidecar')), 8, true)}` +
          `${pad(fmt(q.cpu.cOverB), 7, true)}${pad(fmt(q.cpu.controlOverB), 7, true)}${pad(`${fmt(Math.min(...q.cpu.cOverBPerRound))}-${fmt(Math.max(...q.cpu.cOverBPerRound))}`, 16, true)}` +
          `${pad(fmt(q.cpu.raw.cOverB), 9, true)}${pad(fmt(q.cpu.raw.controlOverB), 7, true)}`,
      );
    }
    lines.push(
      `${pad('', LABEL_WIDTH)}(the pair's two proxies, all threads; c/b and b'/b divide each run's by the load generator's CPU per request in that run,`,
      `${pad('', LABEL_WIDTH)} which gauges the VM's speed while the load generator is busy, not at one connection: raw ratios as measured)`,
    );
    for (const q of r.ratios) {
      const others = r.results.filter((x) => x.connections === q.connections && x.backgroundMsPerSecond !== undefined);
      if (others.length === 0) continue;
      lines.push(
        `${pad('', LABEL_WIDTH)}@${q.connections}: other scenarios' proxies used, during each one's runs (ms of CPU per s): ` +
          others.map((x) => `${SCENARIO_LETTER[x.scenario]} ${fmt(x.backgroundMsPerSecond!, 0)}`).join(', '),
      );
    }
  }
  lines.push('', `${pad('attestation', LABEL_WIDTH)}${pad('conns', 6, true)}${pad('d/c rps', 10, true)}${pad('e/d rps', 10, true)}   (d/c: warm session vs off; e/d: per_request vs session)`);
  for (const q of r.ratios) {
    lines.push(`${pad('', LABEL_WIDTH)}${pad(String(q.connections), 6, true)}${pad(fmt(q.attestation.sessionOverDisabled), 10, true)}${pad(fmt(q.attestation.perRequestOverSession), 10, true)}`);
  }
  lines.push('', `${pad('RSS (MiB)', LABEL_WIDTH)}${pad('at start', 10, true)}${pad('under load', 12, true)}`);
  for (const [name, v] of Object.entries(r.rssMiB)) {
    lines.push(`${pad(name, LABEL_WIDTH)}${pad(fmt(v.idle, 1), 10, true)}${pad(fmt(v.underLoad, 1), 12, true)}`);
  }
  const peaks = Object.entries(r.rssPeak ?? {});
  if (peaks.length) {
    lines.push('', 'at the highest RSS explained: resident file pages + anonymous memory (V8 heap spaces, committed; external)');
    for (const [name, b] of peaks) lines.push(`  ${pad(name, 26)}${describePeak(b)}`);
  }
  if (r.verification.length) {
    lines.push('', `${pad('verification (in process)', 40)}${pad('median us', 11, true)}${pad('x P-384', 9, true)}  source`);
    for (const v of r.verification) lines.push(`${pad(v.type, 40)}${pad(fmt(v.medianUs, 1), 11, true)}${pad(fmt(v.ratioToBareP384), 9, true)}  ${v.source}`);
  }
  if (r.connectionCost.length) {
    lines.push('', `${pad('new mTLS connection + 1 request', 40)}${pad('median ms', 11, true)}${pad('resumed', 12, true)}`);
    for (const c of r.connectionCost) {
      const name = `${c.listener} inbound, ${c.sessionOffered ? 'session offered' : 'full handshake'}`;
      lines.push(`${pad(name, 40)}${pad(fmt(c.medianMs, 3), 11, true)}${pad(`${c.resumed}/${c.connections}`, 12, true)}`);
    }
  }
  const steal = stealSummary(r.results);
  if (steal) lines.push('', steal);
  lines.push('', 'targets');
  for (const t of r.targets) {
    lines.push(`  ${t.pass ? 'PASS' : 'FAIL'}  ${pad(t.name, 48)} ${pad(fmt(t.value), 8, true)}  (${t.limit})`);
  }
  for (const res of r.results) {
    if (res.firstError) lines.push(`  first error in ${res.scenario} @${res.connections}: ${res.firstError}`);
  }
  return lines.join('\n') + '\n';
}
