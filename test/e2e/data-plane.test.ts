/**
 * End to end through two sidecars over real sockets: agent -> outbound sidecar (HTTP proxy) ->
 * mTLS -> inbound sidecar -> app, with SVIDs from the dev issuer's real Workload API.
 */
import t from 'tap';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start();
t.teardown(() => mesh.close());

t.test('allowed call reaches the app with verified identity headers', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents?x=1');
  t.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body);
  t.equal(seen.url, '/agents?x=1', 'path and query are forwarded unchanged');
  t.equal(seen.headers['x-spiffe-id'], idOf('orchestrator'));
  const xfcc = String(seen.headers['x-forwarded-client-cert']);
  t.match(xfcc, new RegExp(`^By=${idOf('control-plane')};Hash=[0-9a-f]{64};URI=${idOf('orchestrator')}$`));
});

t.test('path parameters map to the action', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents/a7/status');
  t.equal(r.status, 200, r.body);
});

t.test('origin-form request with the route name as Host works too', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents', { originForm: true });
  t.equal(r.status, 200, r.body);
  t.equal(JSON.parse(r.body).url, '/agents');
});

t.test('action not permitted', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' });
  t.equal(r.status, 403);
  t.same(JSON.parse(r.body), { error: "Action 'fuzzer.write_harness' not permitted" });
  t.equal(r.headers['content-type'], 'application/json');
});

t.test('unknown agent: valid SVID, no policy entry', async (t) => {
  const r = await viaProxy(mesh.proxyOf('intruder'), 'GET', 'http://control-plane/agents');
  t.equal(r.status, 403);
  t.same(JSON.parse(r.body), { error: 'Unknown agent' });
});

t.test('unmapped request is denied', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'DELETE', 'http://control-plane/agents');
  t.equal(r.status, 403);
  t.same(JSON.parse(r.body), { error: 'No action mapped for DELETE /agents' });
});

t.test('non-canonical paths cannot bypass the mapping', async (t) => {
  // Refused on both sides: by the agent's outbound proxy, and by the inbound side for a client
  // that sends them straight over mTLS.
  const { certChainPem, keyPem } = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  for (const p of ['/agents/../fuzzer/harness', '/agents/%2e%2e/x/status', '/agents//status']) {
    const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', `http://control-plane${p}`);
    t.equal(r.status, 400, p);
    t.match(JSON.parse(r.body).error, /^Malformed request path/);
    const direct = await mesh.mtlsRequest(certChainPem, keyPem, { path: p });
    t.equal(direct.status, 400, `${p} straight to the inbound side`);
    t.match(JSON.parse(direct.body).error, /^Malformed request path/);
  }
});

t.test('spoofed identity headers are removed before the app sees them', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents', {
    headers: {
      'x-spiffe-id': idOf('admin'),
      'X-Forwarded-Client-Cert': 'By=spiffe://evil/x;URI=spiffe://agent-mesh.local/ns/agent-swarm/sa/admin',
    },
  });
  t.equal(r.status, 200);
  const seen = JSON.parse(r.body);
  t.equal(seen.headers['x-spiffe-id'], idOf('orchestrator'));
  t.notMatch(String(seen.headers['x-forwarded-client-cert']), /evil|sa\/admin/);
});

t.test('hop-by-hop headers are not forwarded', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents', {
    headers: { connection: 'keep-alive, x-secret-hop', 'x-secret-hop': 'drop-me', 'proxy-authorization': 'Basic Zm9vOmJhcg==', 'x-keep': 'yes' },
  });
  t.equal(r.status, 200);
  const seen = JSON.parse(r.body);
  t.equal(seen.headers['x-secret-hop'], undefined);
  t.equal(seen.headers['proxy-authorization'], undefined);
  t.equal(seen.headers['x-keep'], 'yes');
});

t.test('a browser-style request is refused before it can use the identity', async (t) => {
  const browserHeaders: Record<string, string>[] = [
    { origin: 'http://evil.example' },
    { 'sec-fetch-site': 'cross-site' },
    { 'sec-fetch-dest': 'image' },
    // Chromium's plain-http subresource GET: no Origin, no Sec-Fetch-*, but a browser's User-Agent.
    { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', accept: 'image/avif,image/webp,*/*' },
  ];
  for (const h of browserHeaders) {
    const before = mesh.app.seen.length;
    const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents', { headers: h });
    t.equal(r.status, 403, JSON.stringify(h));
    t.match(JSON.parse(r.body).error, /Browser-originated requests are refused/);
    t.equal(mesh.app.seen.length, before, 'nothing reached the app');
  }
  // What Node's own fetch sends (sec-fetch-mode among them) is not a browser.
  const node = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents', {
    headers: { 'user-agent': 'node', accept: '*/*', 'accept-language': '*', 'sec-fetch-mode': 'cors' },
  });
  t.equal(node.status, 200);
});

t.test('unknown route is a 404 JSON error', async (t) => {
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://billing/agents');
  t.equal(r.status, 404);
  t.same(JSON.parse(r.body), { error: "Unknown route 'billing'" });
});

t.test('streaming request bodies pass through with backpressure', async (t) => {
  const big = Buffer.alloc(8 * 1024 * 1024, 0x61);
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/upload', { body: big });
  t.equal(r.status, 200, r.body.slice(0, 200));
  t.equal(JSON.parse(r.body).bytes, big.length);
});

t.test('every inbound decision is audited with a reason code', async (t) => {
  const recs = mesh.serverAudit.records.filter((r) => r.type === 'inbound_decision');
  const reasons = new Set(recs.map((r) => r.reason));
  for (const reason of ['allowed', 'action_not_permitted', 'unknown_agent', 'no_action_mapped', 'path_not_canonical']) {
    t.ok(reasons.has(reason), reason);
  }
  const denied = recs.find((r) => r.reason === 'action_not_permitted')!;
  t.equal(denied.peer, idOf('orchestrator'));
  t.equal(denied.action, 'fuzzer.write_harness');
  t.equal(denied.status, 403);
  t.type(denied.latency_ms, 'number');
  t.notOk(recs.some((r) => String(r.path).includes('?')), 'no query strings in the audit trail');
});

t.test('the Host spelling an agent uses does not reopen mTLS connections (TLS server name is per route)', async (t) => {
  const connections = async () =>
    Number(/attest_sidecar_inbound_connections_total\{[^}]*\} (\d+)/.exec(await mesh.server.metrics.registry.getSingleMetricAsString('attest_sidecar_inbound_connections_total'))?.[1] ?? NaN);
  const proxy = mesh.proxyOf('orchestrator');
  t.equal((await viaProxy(proxy, 'GET', 'http://control-plane/agents')).status, 200);
  const before = await connections();
  t.ok(before >= 1, `connections counted (${before})`);
  for (const host of ['Control-Plane', 'CONTROL-PLANE:80', 'control-plane']) {
    const r = await viaProxy(proxy, 'GET', 'http://control-plane/agents', { headers: { host } });
    t.equal(r.status, 200, `${host}: ${r.body}`);
    t.equal(JSON.parse(r.body).headers.host, host, 'the app still sees the Host the agent sent');
  }
  t.equal(await connections(), before, 'no new connection for a differently spelled Host');
});

t.test('a bug while settling a forwarded exchange fails that record, never the sidecar', async (t) => {
  // The exchange finishes before it is recorded, so the caller already has its 200; the failed
  // settling is recorded as internal_error and the next request is served as usual.
  const audit = mesh.serverAudit;
  const record = audit.record.bind(audit);
  let thrown = 0;
  audit.record = (rec) => {
    if (rec.reason === 'allowed' && thrown === 0) {
      thrown++;
      throw new Error('audit bug');
    }
    record(rec);
  };
  t.teardown(() => {
    audit.record = record;
  });
  const first = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.equal(first.status, 200, first.body);
  t.equal(thrown, 1);
  await new Promise((r) => setTimeout(r, 50));
  t.ok(audit.records.some((r) => r.reason === 'internal_error' && r.decision === 'error' && r.peer === idOf('orchestrator')), 'the failure is audited');
  const second = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.equal(second.status, 200, second.body);
});

t.test('admin endpoints: healthz, readyz, status, metrics', async (t) => {
  const admin = mesh.adminOf(mesh.server);
  t.equal((await fetch(`${admin}/healthz`)).status, 200);
  const ready = await fetch(`${admin}/readyz`);
  t.equal(ready.status, 200);
  const rj = (await ready.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> };
  t.equal(rj.ready, true);
  t.same(Object.keys(rj.checks).sort(), ['bundle', 'inbound_listener', 'policy', 'svid']);
  const status = (await (await fetch(`${admin}/status`)).json()) as Record<string, any>;
  t.equal(status.spiffe_id, idOf('control-plane'));
  t.match(status.svid.serial, /^[0-9A-F]+$/i);
  t.ok(Date.parse(status.svid.not_after) > Date.now());
  t.same(status.trust_domains, ['agent-mesh.local']);
  t.match(status.policy.version, /^[0-9a-f]{16}$/);
  t.same(status.routes, []);
  const agentStatus = (await (await fetch(`${mesh.adminOf(mesh.agents.get('orchestrator')!)}/status`)).json()) as Record<string, any>;
  t.same(agentStatus.routes, [{ name: 'control-plane', upstream: mesh.inboundUrl, tls: 'spiffe', server_id: idOf('control-plane') }]);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.match(metrics, /attest_sidecar_requests_total\{direction="inbound",decision="deny",reason="unknown_agent",sidecar="control-plane"\} \d+/);
  t.match(metrics, /attest_sidecar_request_duration_seconds_bucket\{le="0\.005",direction="inbound",decision="allow",sidecar="control-plane"\} \d+/);
  t.match(metrics, /attest_sidecar_request_duration_seconds_bucket\{le="\+Inf",direction="inbound",decision="allow",sidecar="control-plane"\} [1-9]\d*/);
  t.match(metrics, /attest_sidecar_request_duration_seconds_count\{direction="inbound",decision="allow",sidecar="control-plane"\} [1-9]\d*/);
  t.match(metrics, /# TYPE attest_sidecar_request_duration_seconds histogram/);
  t.match(metrics, /attest_sidecar_svid_expiry_seconds\{sidecar="control-plane"\} \d+/);
  t.match(metrics, /# TYPE attest_sidecar_policy_reloads_total counter/);
  // Every non-comment line is `name{labels} value` (Prometheus text exposition).
  for (const line of metrics.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    t.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+|NaN|\+Inf$/, line);
  }
});
