/**
 * PeakMemory: what a sidecar's RSS was made of at its highest sample. Parsing is checked on a
 * real prom-client exposition; the tracker against a real HTTP /metrics on loopback, with this
 * test's own process as the one whose RSS is read from /proc.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import t from 'tap';
import client from 'prom-client';
import { heapFromMetrics, PeakMemory } from '../../bench/peak-memory.js';
import { rssParts } from '../../bench/lib.js';
import { describePeak } from '../../bench/table.js';

const MIB = 2 ** 20;

async function defaultMetricsText(): Promise<string> {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'attest_sidecar_' });
  return registry.metrics();
}

t.test('heap spaces and external memory are read from prom-client default metrics', async (t) => {
  const h = heapFromMetrics(await defaultMetricsText());
  t.ok(h.v8.new !== undefined && h.v8.old !== undefined && h.v8.code !== undefined, `new, old and code spaces (${JSON.stringify(h.v8)})`);
  const sum = Object.values(h.v8).reduce((a, b) => a + b, 0);
  t.ok(h.v8TotalMiB >= sum - 0.5 && h.v8TotalMiB > 1, 'the total counts every space, small ones too');
  t.ok(h.externalMiB !== undefined && h.externalMiB >= 0, 'external memory');
});

t.test('a made-up exposition: labels in any order, other metrics ignored, tiny spaces only in the total', async (t) => {
  const text = [
    '# HELP x_nodejs_heap_space_size_total_bytes Process heap space size total from Node.js in bytes.',
    'x_nodejs_heap_space_size_total_bytes{space="new"} 33554432',
    'x_nodejs_heap_space_size_total_bytes{instance="a",space="old"} 23068672',
    'x_nodejs_heap_space_size_total_bytes{space="read_only"} 0',
    'x_nodejs_heap_space_size_total_bytes{space="shared"} 1024',
    'x_nodejs_heap_space_size_used_bytes{space="old"} 1',
    'x_nodejs_external_memory_bytes 3774873',
  ].join('\n');
  const h = heapFromMetrics(text);
  t.same(h.v8, { new: 32, old: 22 });
  t.equal(h.v8TotalMiB, 54);
  t.equal(h.externalMiB, 3.6);
  t.same(heapFromMetrics('garbage'), { v8: {}, v8TotalMiB: 0 }, 'nothing found: nothing claimed');
  t.equal(
    describePeak({ rssMiB: 121.4, fileMiB: 44.6, anonMiB: 76.8, ...h }),
    '121.4 = files 44.6 + anon 76.8 (V8 54.0: new 32.0, old 22.0; external 3.6)',
  );
});

t.test('the tracker reads /proc at each new high and /metrics only when collected, between runs', { skip: existsSync('/proc/self/status') ? false : 'needs /proc' }, async (t) => {
  const text = await defaultMetricsText();
  let fetches = 0;
  const server = createServer((_req, res) => {
    fetches++;
    res.end(text);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
  const peak = new PeakMemory({ me: url });
  const own = rssParts(process.pid)!;
  t.ok(own.rss > 0 && own.file > 0 && own.anon > 0, 'VmRSS, RssFile and RssAnon read from /proc');

  await peak.warm();
  t.equal(fetches, 1, 'warm: one fetch before any load');
  t.equal(peak.peaks.size, 0, 'warm keeps nothing');
  fetches = 0;
  peak.observe('me', process.pid, 100 * MIB);
  peak.observe('me', process.pid, 100.5 * MIB); // under 1 MiB higher: not a new high
  peak.observe('other', process.pid, 500 * MIB); // not a process to explain
  await new Promise((r) => setTimeout(r, 50));
  t.equal(fetches, 0, 'nothing fetched while a run goes on');
  await peak.collect();
  t.equal(fetches, 1, 'one fetch for the first high, at collect');
  await peak.collect();
  t.equal(fetches, 1, 'no new high since: nothing to fetch');
  peak.observe('me', process.pid, 102 * MIB);
  peak.observe('me', process.pid, 104 * MIB);
  await peak.collect();
  t.equal(fetches, 2, 'two new highs in one run: one fetch, for the higher');
  const b = peak.peaks.get('me')!;
  t.ok(b.v8TotalMiB > 0 && b.v8.old! > 0, 'breakdown from /metrics');
  t.ok(Math.abs(b.rssMiB - (b.fileMiB + b.anonMiB)) < 2, 'RSS is its file pages plus anonymous memory (shmem aside)');
  t.notOk(peak.peaks.has('other'));
});

t.test('a sidecar that does not answer leaves its peak unexplained, without failing the run', async (t) => {
  const peak = new PeakMemory({ gone: 'http://127.0.0.1:9/metrics' });
  peak.observe('gone', process.pid, 100 * MIB);
  await peak.collect();
  t.equal(peak.peaks.size, 0);
});
