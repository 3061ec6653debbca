/**
 * Runs one target's inputs in a worker thread. Before each input it publishes the iteration and
 * the input bytes in shared memory, so the watchdog on the main thread can name the input that
 * hung (and kill this thread) without a message per input.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { makeInput } from './engine.js';
import { classifyThrown, findingKey, type FuzzTarget, type OutcomeKind } from './target.js';
import { targetNamed } from './targets/index.js';

export interface WorkerParams {
  target: string;
  /** A module exporting TARGETS to look the target up in instead of the registry (the harness's own tests). */
  targetsModule?: string;
  seed: number;
  startIteration: number;
  /** Stop before this iteration. */
  endIteration: number;
  /** Stop at this wall-clock time (epoch ms), if set, or ... */
  stopAtMs?: number;
  /** ... this many seconds after the target is prepared (the first worker of a timed run). */
  seconds?: number;
  /** An input using more CPU than this (ms) is a `slow` finding. */
  slowCpuMs: number;
  /** [iteration + 1 of the input running (0: none), input length] */
  control: SharedArrayBuffer;
  input: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'ready'; seeds: number; stopAtMs: number | undefined }
  | { type: 'finding'; kind: OutcomeKind; key: string; error: string; iteration: number; input: string }
  | { type: 'done'; counts: Record<string, number>; nextIteration: number; reasons: Record<string, number> };

export const CONTROL = { running: 0, length: 1 } as const;

async function main(p: WorkerParams): Promise<void> {
  const target = p.targetsModule
    ? ((await import(p.targetsModule)) as { TARGETS: FuzzTarget[] }).TARGETS.find((t) => t.name === p.target)
    : targetNamed(p.target);
  if (!target) throw new Error(`unknown fuzz target ${p.target}`);
  const prepared = await target.prepare();
  const hints = target.hints ?? {};
  const control = new Int32Array(p.control);
  const shared = new Uint8Array(p.input);
  const counts: Record<string, number> = { ok: 0, typed: 0 };
  const reasons: Record<string, number> = Object.create(null) as Record<string, number>;
  const reported = new Set<string>();
  // A timed run counts from here: preparing (key generation) is not fuzzing.
  const stopAtMs = p.stopAtMs ?? (p.seconds !== undefined ? Date.now() + p.seconds * 1000 : undefined);
  parentPort!.postMessage({ type: 'ready', seeds: prepared.seeds.length, stopAtMs } satisfies WorkerMessage);

  const report = (kind: OutcomeKind, error: string, iteration: number, input: Uint8Array) => {
    counts[kind] = (counts[kind] ?? 0) + 1;
    const key = findingKey(p.target, kind, error);
    if (reported.has(key)) return;
    reported.add(key);
    parentPort!.postMessage({ type: 'finding', kind, key, error, iteration, input: Buffer.from(input).toString('base64') } satisfies WorkerMessage);
  };

  let i = p.startIteration;
  for (; i < p.endIteration; i++) {
    if (stopAtMs !== undefined && (i & 15) === 0 && Date.now() >= stopAtMs) break;
    const input = makeInput(prepared.seeds, hints, p.seed, p.target, i);
    const n = Math.min(input.length, shared.length);
    shared.set(input.subarray(0, n));
    Atomics.store(control, CONTROL.length, n);
    Atomics.store(control, CONTROL.running, i + 1);
    const cpu = process.cpuUsage();
    try {
      const r = prepared.run(input);
      if (r instanceof Promise) await r;
      counts.ok!++;
    } catch (err) {
      const c = classifyThrown(err);
      if (c.kind === 'typed') {
        counts.typed!++;
        reasons[c.reason] = (reasons[c.reason] ?? 0) + 1;
      } else report('untyped', c.error, i, input);
    }
    const used = process.cpuUsage(cpu);
    const ms = (used.user + used.system) / 1000;
    if (ms > p.slowCpuMs) report('slow', `used ${Math.round(ms)} ms of CPU (limit ${p.slowCpuMs} ms)`, i, input);
    Atomics.store(control, CONTROL.running, 0);
  }
  parentPort!.postMessage({ type: 'done', counts, nextIteration: i, reasons } satisfies WorkerMessage);
}

if (parentPort && workerData) await main(workerData as WorkerParams);
