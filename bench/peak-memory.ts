/**
 * What a sidecar's RSS was made of at its highest: the benchmark's RSS target is a maximum, and
 * an unusual maximum cannot be explained after the fact. Each time a watched sidecar's sampled RSS rises more than STEP above the highest
 * seen so far, its resident file pages and anonymous memory are read from /proc at once and its
 * V8 heap spaces from its admin /metrics (prom-client's default metrics), so the report can say
 * whether a peak was the young generation, old-generation garbage awaiting a full collection,
 * or memory outside V8 (OpenSSL, malloc). /proc is read at the sample; /metrics after the run
 * (see collect), only for a new high: at most once per MiB a sidecar grows, nearly all while its
 * heap grows to its working size in the first rounds.
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
  /** New highs seen since the last collect(): /proc's split, read at the sample itself. */
  private readonly waiting = new Map<string, { rss: number; file: number; anon: number }>();

  /** `metricsUrls`: the admin /metrics URL of each process to explain, by name. */
  constructor(private readonly metricsUrls: Record<string, string>) {}

  /** Called with every RSS sample (bytes) during a run: reads /proc on a new high, nothing else. */
  readonly observe = (name: string, pid: number, rss: number): void => {
    if (this.metricsUrls[name] === undefined || rss < (this.highest.get(name) ?? 0) + STEP) return;
    this.highest.set(name, rss);
    const parts = rssParts(pid);
    if (parts) this.waiting.set(name, parts); // a higher sample replaces a lower one
  };

  /**
   * Before any load: fetches every /metrics once and keeps nothing, so that the first fetch()
   * of this process (which loads undici) and each sidecar's first render happen outside runs.
   */
  async warm(): Promise<void> {
    await Promise.all(
      Object.values(this.metricsUrls).map((url) =>
        fetch(url, { signal: AbortSignal.timeout(2000) }).then((res) => res.arrayBuffer()).catch(() => undefined),
      ),
    );
  }

  /**
   * Between runs: reads the V8 heap spaces of each process that set a new high during the run.
   * Fetching during a run would stall the sidecar under test (rendering /metrics takes its event
   * loop a few ms) and the load generator (whose first fetch() also loads undici), and
   * only the sidecar scenarios have /metrics: a cost on c, d and e that b never pays. Committed
   * heap spaces change at allocation and collection, so a few ms after the run's last request
   * they read what they held at its peak, to within what a collection since returned.
   */
  async collect(): Promise<void> {
    const batch = [...this.waiting];
    this.waiting.clear();
    await Promise.all(
      batch.map(async ([name, parts]) => {
        try {
          const res = await fetch(this.metricsUrls[name]!, { signal: AbortSignal.timeout(2000) });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const text = await res.text();
          const best = this.peaks.get(name);
          if (best && best.rssMiB >= parts.rss / MIB) return;
          this.peaks.set(name, { rssMiB: round1(parts.rss / MIB), fileMiB: round1(parts.file / MIB), anonMiB: round1(parts.anon / MIB), ...heapFromMetrics(text) });
        } catch {
          // A breakdown is a diagnostic: a sidecar that does not answer leaves its peak unexplained.
        }
      }),
    );
  }
}
