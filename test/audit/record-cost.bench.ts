/**
 * Micro-benchmark (not a test): the cost of `JsonLinesAuditSink.record()` on the request hot
 * path, hash-chained vs the pre-chain implementation (kept below, verbatim in its hot path, as
 * the baseline). Run: `node dist/test/audit/record-cost.bench.js [records]`.
 *
 * Reports per record: record() alone, the drain (hashing + batch handoff, off the request path
 * in a 100 ms timer), and the two together. Writes go to /dev/null so disk speed is not measured.
 */
import { openSync, write } from 'node:fs';
import { setImmediate as tick } from 'node:timers/promises';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { type AuditRecord } from '../../src/audit/record.js';

/** The hot path of src/log.ts before hash chaining (commit before issue 4 part 4). */
class UnchainedBaseline {
  private readonly prefix: string;
  private buf = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private writing: Promise<void> = Promise.resolve();
  private lastMs = 0;
  private lastIso = '';
  constructor(private readonly fd: number, name: string) {
    this.prefix = `","log":"audit","sidecar":${JSON.stringify(name)},`;
  }
  record(rec: AuditRecord): void {
    const now = Date.now();
    if (now !== this.lastMs) {
      this.lastMs = now;
      this.lastIso = new Date(now).toISOString();
    }
    const line = `{"time":"${this.lastIso}${this.prefix}${JSON.stringify(rec).slice(1)}\n`;
    if (this.used + line.length * 3 > this.buf.length) this.drain();
    this.used += this.buf.write(line, this.used, 'utf8');
  }
  drain(): void {
    if (this.used === 0) return;
    const data = this.buf.subarray(0, this.used);
    this.buf = Buffer.allocUnsafe(64 * 1024);
    this.used = 0;
    this.writing = this.writing.then(() => new Promise<void>((res) => write(this.fd, data, () => res())));
  }
  async sync(): Promise<void> {
    this.drain();
    await this.writing;
  }
}

interface Subject {
  record(rec: AuditRecord): void;
  sync(): Promise<void>;
}

function rec(i: number): AuditRecord {
  return {
    decision: i & 1 ? 'allow' : 'deny',
    reason: i & 1 ? 'allowed' : 'action_not_allowed',
    peer: 'spiffe://example.org/ns/agents/sa/research-agent',
    method: 'POST',
    path: `/v1/tools/search/${i & 1023}`,
    action: 'tools.search',
    status: i & 1 ? 200 : 403,
    type: 'inbound_decision',
    latency_ms: 0.412,
  };
}

/** Slices of 100 records (~25 KB, below one batch) so record() never drains inside the timing. */
async function measure(subject: Subject, total: number): Promise<{ recordNs: number; drainNs: number }> {
  let recordTime = 0;
  let drainTime = 0;
  const recs = Array.from({ length: 100 }, (_, i) => rec(i));
  for (let done = 0; done < total; done += 100) {
    let t0 = performance.now();
    for (let i = 0; i < 100; i++) subject.record(recs[i]!);
    recordTime += performance.now() - t0;
    t0 = performance.now();
    const p = subject.sync(); // the synchronous part is the drain
    drainTime += performance.now() - t0;
    await p;
    if (done % 10_000 === 0) await tick();
  }
  return { recordNs: (recordTime * 1e6) / total, drainNs: (drainTime * 1e6) / total };
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 300_000);
  const devNull = openSync('/dev/null', 'w');
  const make = {
    baseline: (): Subject => new UnchainedBaseline(devNull, 'bench'),
    chained: (): Subject => new JsonLinesAuditSink('/dev/null', 'bench', { fsync: false, flushIntervalMs: 60_000 }),
  };
  // Warm up both, then alternate rounds so drift affects both alike.
  for (const k of ['baseline', 'chained'] as const) await measure(make[k](), 50_000);
  const results: Record<string, { recordNs: number; drainNs: number }[]> = { baseline: [], chained: [] };
  for (let round = 0; round < 5; round++) {
    for (const k of ['baseline', 'chained'] as const) results[k]!.push(await measure(make[k](), total));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = Object.fromEntries(
    Object.entries(results).map(([k, rs]) => {
      const recordNs = median(rs.map((r) => r.recordNs));
      const drainNs = median(rs.map((r) => r.drainNs));
      return [k, { recordNs: Math.round(recordNs), drainNs: Math.round(drainNs), totalNs: Math.round(recordNs + drainNs) }];
    }),
  ) as Record<'baseline' | 'chained', { recordNs: number; drainNs: number; totalNs: number }>;
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  process.stdout.write(
    `${JSON.stringify({
      node: process.version,
      records: total,
      ...summary,
      ratio: {
        record: ratio(summary.chained.recordNs, summary.baseline.recordNs),
        total: ratio(summary.chained.totalNs, summary.baseline.totalNs),
      },
    }, null, 2)}\n`,
  );
}

await main();
