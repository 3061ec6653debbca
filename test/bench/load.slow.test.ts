/**
 * The benchmark's measuring tools, over the real pairs: a counted run (what `npm run bench`
 * measures with) ends without requests in flight, so the sidecars' pooled mTLS connections
 * survive into the next run; and the connection-cost measurement really makes new connections,
 * really resumes on the bare listener, and is never resumed by the sidecar.
 * No timings are asserted: those are measurements.
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import { killAll, repoRoot, stopChild } from '../../bench/lib.js';
import { measureConnectionCost } from '../../bench/connection-cost.js';
import { runLoad } from '../../bench/load.js';
import { BENCH_PATH, ROUTE, startPairs, writeBenchFiles } from '../../bench/setup.js';

async function inboundConnectionsTotal(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('attest_sidecar_inbound_connections_total'));
  if (!line) throw new Error('attest_sidecar_inbound_connections_total not exposed');
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('bench tools over the real pairs', async (t) => {
  const f = await writeBenchFiles();
  const pairs = await startPairs(f, repoRoot());
  t.teardown(async () => {
    await Promise.all(pairs.procs.map((c) => stopChild(c)));
    killAll();
    rmSync(f.dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${f.ports.agentOutbound}${BENCH_PATH}`;
  const headers = { host: ROUTE };

  await t.test('a counted run keeps the pooled upstream connections of the run before', async (t) => {
    await t.rejects(runLoad({ url, connections: 4 }), /exactly one of amount and durationSeconds/);
    const first = await runLoad({ url, connections: 16, amount: 800, headers });
    t.equal(first.errors + first.non2xx, 0, 'no errors');
    t.ok(first.requests > 0 && first.requests <= 800, `measured ${first.requests} of 800 in the busy window`);
    t.ok(first.elapsedSeconds > 0 && first.reqPerSec > 0, 'rate measured');
    t.equal(first.cpu, undefined, 'no processes watched: no CPU reading');
    const watched = await runLoad({
      url, connections: 16, amount: 800, headers,
      watch: [{ name: 'sc-out', pid: pairs.scOut.pid }, { name: 'sc-in', pid: pairs.scIn.pid }],
      background: [pairs.refOut.pid, pairs.refIn.pid],
    });
    t.ok(watched.cpu, 'CPU read for the watched pair');
    // Every response of the run counts (the tail after the measured window too), and both the
    // pair and this process used CPU for them.
    t.equal(watched.cpu!.responses, 800, 'every response of the run');
    t.ok(watched.cpu!.proxiesNs > 0 && watched.cpu!.loadgenNs > 0, `CPU used: pair ${watched.cpu!.proxiesNs} ns, load generator ${watched.cpu!.loadgenNs} ns`);
    // The idle bare pair in the background: read, and far less than the busy pair (it serves nothing).
    t.ok(watched.cpu!.backgroundNs! >= 0 && watched.cpu!.backgroundNs! < watched.cpu!.proxiesNs / 4, `background read: ${watched.cpu!.backgroundNs} ns`);
    t.ok(watched.cpu!.wallNs! > 0, 'the run\'s length');
    const before = await inboundConnectionsTotal(f.ports.serviceAdmin);
    for (let i = 0; i < 3; i++) {
      const r = await runLoad({ url, connections: 16, amount: 800, headers });
      t.equal(r.errors + r.non2xx, 0, `run ${i + 2}: no errors`);
    }
    t.equal(await inboundConnectionsTotal(f.ports.serviceAdmin), before, 'no new mTLS connection between the proxies in three more counted runs');
  });

  await t.test('connection cost: full handshakes everywhere, resumption only on the bare listener', async (t) => {
    const costs = await measureConnectionCost(f, 10);
    t.equal(costs.length, 4);
    const find = (listener: string, offered: boolean) => costs.find((c) => c.listener === listener && c.sessionOffered === offered)!;
    for (const c of costs) {
      t.equal(c.connections, 10, `${c.listener}, session offered ${c.sessionOffered}: every connection answered 200`);
      t.ok(c.medianMs > 0, 'timed');
    }
    t.equal(find('bare', false).resumed, 0, 'no session offered: never resumed');
    t.equal(find('bare', true).resumed, 10, 'the bare listener resumes an offered session');
    t.equal(find('sidecar', false).resumed, 0);
    t.equal(find('sidecar', true).resumed, 0, 'the sidecar refuses resumption: a reconnecting peer is verified again');
  });
});
