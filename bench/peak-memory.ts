/**
 * What a sidecar's RSS was made of at its highest: the benchmark's RSS target is a maximum, and
 * a maximum 30-40 MiB above the usual one (seen twice in 32-connection runs) cannot be explained
 * after the fact. Each time a watched sidecar's sampled RSS rises more than STEP above the highest
 * seen so far, its resident file pages and anonymous memory are read from /proc at once and its
 * V8 heap spaces from its admin /metrics (prom-client's default metrics), so the report can say
 * whether a peak was the young generation, old-generation garbage awaiting a full collection,
 * or memory outside V8 (OpenSSL, malloc). Fetches happen only on a new high: at most once per
 * MiB a sidecar grows, nearly all while its heap grows to its working size in the first rounds.
 */
import { rssParts } from './lib.js';

const MIB = 2 ** 20;
/** A rise of this much over the highest seen triggers a new breakdown. */
const STEP = 1 * MIB;

export interface MemoryBreakdown {
  /** VmRSS when the breakdown was taken, MiB. */
  rssMiB: number;
  /** Resident file-backed pages (the node binary, shared libraries) and anonymous memory, MiB. */
  fileMiB: number;
  anonMiB: number;
  /** V8 heap spaces' committed size (new, old, code, large_object, ...) and their sum, MiB. */
  v8: Record<string, number>;
  v8TotalMiB: number;
  /** Memory V8 counts as external (Buffers, ArrayBuffers), MiB. */
  externalMiB?: number;
}

/** V8 heap spaces and external memory from a Prometheus exposition (any metric name prefix). */
export function heapFromMetrics(text: string): { v8: Record<string, number>; v8TotalMiB: number; externalMiB?: number } {
  const v8: Record<string, number> = {};
  let total = 0;
  for (const m of text.matchAll(/^\w*nodejs_heap_space_size_total_bytes\{[^}]*space="(\w+)"[^}]*\} ([\d.e+]+)$/gm)) {
    const bytes = Number(m[2]);
    if (!Number.isFinite(bytes)) continue;
    total += bytes;
    if (bytes >= 0.05 * MIB) v8[m[1]!] = round1(bytes / MIB);
  }
  const external = /^\w*nodejs_external_memory_bytes(?:\{[^}]*\})? ([\d.e+]+)$/m.exec(text);
  return { v8, v8TotalMiB: round1(total / MIB), ...(external ? { externalMiB: round1(Number(external[1]) / MIB) } : {}) };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

export class PeakMemory {
  /** The breakdown at each process's highest RSS so far (by process name). */
  readonly peaks = new Map<string, MemoryBreakdown>();
  private readonly highest = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  private readonly pending = new Set<Promise<void>>();

  /** `metricsUrls`: the admin /metrics URL of each process to explain, by name. */
  constructor(private readonly metricsUrls: Record<string, string>) {}

  /** Called with every RSS sample (bytes); cheap unless the sample is a new high. */
  readonly observe = (name: string, pid: number, rss: number): void => {
    const url = this.metricsUrls[name];
    if (url === undefined || this.inFlight.has(name) || rss < (this.highest.get(name) ?? 0) + STEP) return;
    this.highest.set(name, rss);
    const parts = rssParts(pid);
    if (!parts) return;
    this.inFlight.add(name);
    const done = fetch(url, { signal: AbortSignal.timeout(2000) })
      .then((res) => (res.ok ? res.text() : Promise.reject(new Error(`HTTP ${res.status}`))))
      .then((text) => {
        const best = this.peaks.get(name);
        if (best && best.rssMiB >= parts.rss / MIB) return;
        this.peaks.set(name, { rssMiB: round1(parts.rss / MIB), fileMiB: round1(parts.file / MIB), anonMiB: round1(parts.anon / MIB), ...heapFromMetrics(text) });
      })
      // A breakdown is a diagnostic: a sidecar too busy to answer in time leaves its peak unexplained.
      .catch(() => undefined)
      .finally(() => {
        this.inFlight.delete(name);
        this.pending.delete(done);
      });
    this.pending.add(done);
  };

  /** Waits for breakdowns still being fetched. */
  async settle(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
