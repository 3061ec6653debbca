/**
 * Rotation under load: SVIDs with a 2 s TTL rotate every second on both sides while agents
 * keep sending requests over kept-alive connections. Not one request may fail.
 */
import http from 'node:http';
import t from 'tap';
import { TestMesh, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start({ svidTtlSeconds: 2, agents: ['orchestrator'] });
t.teardown(() => mesh.close());

/**
 * The client leaf hash of every XFCC header the app received, taken from the echoed request
 * (the app keeps only its last 1000 requests, which a fast machine serves within one SVID).
 */
const clientLeafHashes = new Set<string>();

t.test('zero failed requests while both sides rotate', async (t) => {
  const proxy = mesh.proxyOf('orchestrator');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.teardown(() => agent.destroy());
  const serverSerials = new Set<string>();
  const clientSerials = new Set<string>();
  const sample = () => {
    serverSerials.add((mesh.server.status().svid as { serial: string }).serial);
    clientSerials.add((mesh.agents.get('orchestrator')!.status().svid as { serial: string }).serial);
  };
  const deadline = Date.now() + 4_500;
  let ok = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (Date.now() < deadline) {
      sample();
      const r = await viaProxy(proxy, 'GET', 'http://control-plane/agents', { agent }).catch((e: Error) => ({ status: 0, body: e.message, headers: {} }));
      if (r.status === 200) {
        ok++;
        const echoed = JSON.parse(r.body) as { headers: Record<string, string | undefined> };
        const hash = /Hash=([0-9a-f]+)/.exec(echoed.headers['x-forwarded-client-cert'] ?? '')?.[1];
        if (hash) clientLeafHashes.add(hash);
      } else failures.push(`${r.status} ${r.body}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  t.same(failures.slice(0, 5), [], 'no failed request');
  t.ok(ok > 50, `requests completed: ${ok}`);
  t.ok(serverSerials.size >= 3, `inbound sidecar rotated (${serverSerials.size} serials)`);
  t.ok(clientSerials.size >= 3, `outbound sidecar rotated (${clientSerials.size} serials)`);
  const metrics = await mesh.server.metrics.registry.getSingleMetricAsString('attest_sidecar_svid_rotations_total');
  t.match(metrics, /attest_sidecar_svid_rotations_total\{sidecar="control-plane"\} [2-9]/);
});

t.test('the app saw the rotating client certificates (XFCC hash changes)', async (t) => {
  t.ok(clientLeafHashes.size >= 2, `distinct client leaf hashes: ${clientLeafHashes.size}`);
});
