/**
 * Runs targets one at a time, each in a worker thread under a watchdog. An input that keeps the
 * worker busy past the hang limit (CPU time, so a loaded machine does not cause false alarms;
 * plus a generous wall-clock bound for inputs that wait rather than spin) gets the worker
 * terminated and is reported as a `hang`; a worker that dies is a `crash`. Either way the run
 * resumes at the next input. Every finding is written to the crash folder with what reproduces
 * it: target, seed, iteration and the input bytes.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { OutcomeKind } from './target.js';
import { CONTROL, type WorkerMessage, type WorkerParams } from './worker.js';

export interface RunOptions {
  seed: number;
  /** Inputs per target (the short pass), or ... */
  iterations?: number;
  /** ... seconds per target (the long mode). */
  seconds?: number;
  /** CPU ms above which an input is `slow`; default 1000. */
  slowCpuMs?: number;
  /** CPU ms after which a running input is a `hang` and its worker is killed; default 5000. */
  hangCpuMs?: number;
  /** Wall ms after which a running input is a `hang` whatever its CPU; default 120 000. */
  hangWallMs?: number;
  crashDir: string;
  /** Look targets up in this module (URL) instead of the registry. */
  targetsModule?: string;
  log?: (line: string) => void;
}

export interface Finding {
  target: string;
  kind: OutcomeKind;
  error: string;
  iteration: number;
  seed: number;
  file: string;
}

export interface TargetReport {
  target: string;
  iterations: number;
  counts: Record<string, number>;
  reasons: Record<string, number>;
  findings: Finding[];
}

const MAX_INPUT = 1 << 20;
const WORKER_FILE = new URL('./worker.js', import.meta.url);

export async function runTarget(target: string, o: RunOptions): Promise<TargetReport> {
  const end = o.iterations ?? Number.MAX_SAFE_INTEGER;
  // Set by the first worker once the target is prepared; later workers (after a hang) keep it.
  let stopAtMs: number | undefined;
  const report: TargetReport = { target, iterations: 0, counts: {}, reasons: {}, findings: [] };
  const seen = new Set<string>();
  const record = (kind: OutcomeKind, error: string, iteration: number, input: Uint8Array, key: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    const id = createHash('sha256').update(key).digest('hex').slice(0, 12);
    mkdirSync(o.crashDir, { recursive: true });
    const file = path.join(o.crashDir, `${target}-${kind}-${id}.json`);
    const body = { target, kind, error, seed: o.seed, iteration, replay: `npm run fuzz -- --replay ${file}`, inputBase64: Buffer.from(input).toString('base64'), ...(input.length <= 4096 ? { inputHex: Buffer.from(input).toString('hex') } : {}) };
    writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
    const f: Finding = { target, kind, error, iteration, seed: o.seed, file };
    report.findings.push(f);
    o.log?.(`  ${f.kind.toUpperCase()} ${target} #${iteration}: ${error.slice(0, 300)} -> ${file}`);
  };
  const add = (counts: Record<string, number>, into: Record<string, number>) => {
    for (const [k, v] of Object.entries(counts)) into[k] = (into[k] ?? 0) + v;
  };

  let start = 0;
  while (start < end && (stopAtMs === undefined || Date.now() < stopAtMs)) {
    const control = new SharedArrayBuffer(8);
    const inputBuf = new SharedArrayBuffer(MAX_INPUT);
    const params: WorkerParams = {
      target,
      seed: o.seed,
      startIteration: start,
      endIteration: end,
      ...(stopAtMs !== undefined ? { stopAtMs } : o.seconds !== undefined ? { seconds: o.seconds } : {}),
      slowCpuMs: o.slowCpuMs ?? 1000,
      ...(o.targetsModule ? { targetsModule: o.targetsModule } : {}),
      control,
      input: inputBuf,
    };
    const outcome = await new Promise<{ next: number }>((resolve) => {
      const worker = new Worker(WORKER_FILE, { workerData: params, resourceLimits: { maxOldGenerationSizeMb: 512 } });
      const ctrl = new Int32Array(control);
      const current = () => {
        const running = Atomics.load(ctrl, CONTROL.running);
        const n = Atomics.load(ctrl, CONTROL.length);
        return { iteration: running - 1, input: Uint8Array.from(new Uint8Array(inputBuf, 0, n)) };
      };
      let settled = false;
      let lastRunning = -1;
      let since = { wall: Date.now(), cpu: process.cpuUsage() };
      const finish = (next: number) => {
        if (settled) return;
        settled = true;
        clearInterval(watchdog);
        resolve({ next });
      };
      const watchdog = setInterval(() => {
        const running = Atomics.load(ctrl, CONTROL.running);
        if (running !== lastRunning) {
          lastRunning = running;
          since = { wall: Date.now(), cpu: process.cpuUsage() };
          return;
        }
        if (running === 0) return;
        const used = process.cpuUsage(since.cpu);
        const cpuMs = (used.user + used.system) / 1000;
        const wallMs = Date.now() - since.wall;
        if (cpuMs > (o.hangCpuMs ?? 5000) || wallMs > (o.hangWallMs ?? 120_000)) {
          const c = current();
          const error = `no result after ${Math.round(cpuMs)} ms of CPU (${Math.round(wallMs)} ms wall)`;
          record('hang', error, c.iteration, c.input, `${target} hang`);
          report.counts.hang = (report.counts.hang ?? 0) + 1;
          report.iterations += c.iteration + 1 - start;
          finish(c.iteration + 1);
          void worker.terminate();
        }
      }, 100);
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') stopAtMs = m.stopAtMs;
        else if (m.type === 'finding') record(m.kind, m.error, m.iteration, Buffer.from(m.input, 'base64'), m.key);
        else if (m.type === 'done') {
          add(m.counts, report.counts);
          add(m.reasons, report.reasons);
          report.iterations += m.nextIteration - start;
          finish(m.nextIteration);
        }
      });
      worker.on('error', (err) => {
        if (settled) return;
        const c = current();
        const iteration = Math.max(c.iteration, start);
        record('crash', `worker died: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, iteration, c.input, `${target} crash ${String(err).slice(0, 80)}`);
        report.counts.crash = (report.counts.crash ?? 0) + 1;
        report.iterations += iteration + 1 - start;
        finish(c.iteration >= 0 ? iteration + 1 : end); // died outside an input (prepare): give up
      });
      worker.on('exit', (code) => {
        if (settled) return;
        const c = current();
        record('crash', `worker exited with ${code}`, c.iteration, c.input, `${target} exit ${code}`);
        finish(c.iteration >= 0 ? c.iteration + 1 : end);
      });
    });
    start = outcome.next;
  }
  return report;
}

/** Findings that fail a run: every one. */
export function failures(reports: readonly TargetReport[]): Finding[] {
  return reports.flatMap((r) => r.findings);
}
