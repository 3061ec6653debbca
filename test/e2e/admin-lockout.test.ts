/**
 * The kill switch cannot be locked out: over real sockets, a flood of failed admin attempts
 * never refuses the right token, and requests a browser sends for a foreign page (form posts,
 * Origin, Fetch Metadata) are refused before authentication without feeding the throttle. The
 * last test drives headless Chromium: a page on another loopback origin auto-submits forms and
 * fires no-cors fetches at the kill endpoints.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { chromiumSkip, launchChromium, waitUntil } from '../helpers/browser.js';

const ORCH = idOf('orchestrator');

interface Reply {
  status: number;
  json: Record<string, unknown>;
}

/** One POST on a raw node:http request (so any header, including Origin, goes out as given). */
function post(base: string, path: string, headers: Record<string, string>, body: string, agent?: http.Agent): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, ...(agent ? { agent } : {}) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) as Record<string, unknown> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TYPE = { 'content-type': 'application/json' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const wrongToken = 'w'.repeat(43);

async function orchestratorServed(mesh: TestMesh): Promise<number> {
  return (await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status;
}

const mesh = await TestMesh.start({ agents: ['orchestrator'] });
t.teardown(() => mesh.close());
const admin = mesh.adminOf(mesh.server);
const token = readFileSync(mesh.server.adminTokenFile!, 'utf8').trim();
const refusedByGuard = () => mesh.serverAudit.records.filter((r) => r.type === 'admin_auth_failed' && r.reason === 'admin_browser_request').length;
const authFailures = () => mesh.serverAudit.records.filter((r) => r.type === 'admin_auth_failed' && r.reason !== 'admin_browser_request').length;

t.test('browser-shaped requests are refused with 403 before authentication and are not counted', async (t) => {
  const before = authFailures();
  // Four real failures: one short of the throttle (five a minute per address).
  for (let i = 0; i < 4; i++) t.equal((await post(admin, '/v1/killall', { ...JSON_TYPE, ...bearer(wrongToken) }, '{}')).status, 401);
  const body = JSON.stringify({ spiffe_id: ORCH });
  const shapes: [string, Record<string, string>][] = [
    ['a urlencoded form', { 'content-type': 'application/x-www-form-urlencoded', ...bearer(token) }],
    ['a multipart form', { 'content-type': 'multipart/form-data; boundary=x', ...bearer(token) }],
    ['a text/plain form', { 'content-type': 'text/plain;charset=UTF-8' }],
    ['JSON from a foreign Origin', { ...JSON_TYPE, origin: 'http://127.0.0.1:1', ...bearer(token) }],
    ['JSON with Origin: null', { ...JSON_TYPE, origin: 'null' }],
    ['JSON with Sec-Fetch-Site: cross-site', { ...JSON_TYPE, 'sec-fetch-site': 'cross-site' }],
    ['JSON with Sec-Fetch-Site: same-site', { ...JSON_TYPE, 'sec-fetch-site': 'same-site' }],
    ['a navigation (Sec-Fetch-Mode: navigate)', { ...JSON_TYPE, 'sec-fetch-mode': 'navigate' }],
    ['a no-cors fetch', { 'sec-fetch-mode': 'no-cors' }],
    ['an iframe form target', { ...JSON_TYPE, 'sec-fetch-dest': 'iframe' }],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [what, headers] of shapes) {
      const r = await post(admin, '/v1/kill', headers, body);
      if (round === 0) {
        t.equal(r.status, 403, what);
        t.equal(r.json.reason, 'admin_browser_request', what);
        t.type(r.json.error, 'string');
      }
    }
  }
  t.equal(await orchestratorServed(mesh), 200, 'nothing was revoked, not even with the right token in a form post');
  t.equal(authFailures() - before, 4, 'the refused requests never reached authentication');
  t.equal((await post(admin, '/v1/killall', { ...JSON_TYPE, ...bearer(wrongToken) }, '{}')).status, 401, 'the fifth real failure is a 401: nothing else was counted');
  t.equal((await post(admin, '/v1/killall', { ...JSON_TYPE, ...bearer(wrongToken) }, '{}')).status, 429, 'the sixth is throttled');

  // What the CLI (Node fetch: Sec-Fetch-Mode cors) and curl send, and the status page's own fetch.
  const ok = await fetch(`${admin}/v1/restore`, { method: 'POST', headers: { ...JSON_TYPE, ...bearer(token) }, body: JSON.stringify({ all: true }) });
  t.equal(ok.status, 200, 'Node fetch with the right token, while failures are throttled');
  const samePage = await post(admin, '/v1/restore', { ...JSON_TYPE, ...bearer(token), origin: admin, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }, '{"all":true}');
  t.equal(samePage.status, 200, "the status page's same-origin fetch");
  t.equal((await post(admin, '/v1/killall', bearer(token), '')).status, 200, 'no body and no content type (curl -X POST)');
  t.equal((await post(admin, '/v1/restore', { ...JSON_TYPE, ...bearer(token) }, '{"all":true}')).status, 200);
});

t.test('100 failed attempts, then the right token works at once', async (t) => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.teardown(() => agent.destroy());
  const statuses = new Map<number, number>();
  for (let i = 0; i < 100; i++) {
    const headers = i % 3 === 0 ? JSON_TYPE : { ...JSON_TYPE, ...bearer(`${wrongToken}${i}`) };
    const r = await post(admin, '/v1/killall', headers, '{}', agent);
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  t.ok((statuses.get(429) ?? 0) >= 90, `failures are throttled (${JSON.stringify([...statuses])})`);
  t.equal(statuses.get(200), undefined, 'no failed attempt succeeded');
  const kill = await post(admin, '/v1/kill', { ...JSON_TYPE, ...bearer(token) }, JSON.stringify({ spiffe_id: ORCH, reason: 'lockout test' }), agent);
  t.equal(kill.status, 200, JSON.stringify(kill.json));
  await waitUntil(async () => (await orchestratorServed(mesh)) === 403, 'the revocation to apply', { timeoutMs: 30_000 });
  const restore = await post(admin, '/v1/restore', { ...JSON_TYPE, ...bearer(token) }, JSON.stringify({ spiffe_id: ORCH }), agent);
  t.equal(restore.status, 200);
  t.equal(await orchestratorServed(mesh), 200);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.match(metrics, /attest_sidecar_admin_auth_failures_total\{reason="admin_rate_limited"[^}]*\} [1-9]/);
  t.match(metrics, /attest_sidecar_admin_auth_failures_total\{reason="admin_browser_request"[^}]*\} [1-9]/);
});

t.test('Chromium: a page on another loopback origin cannot revoke anything or lock out the token', { skip: chromiumSkip() }, async (t) => {
  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const forms = [
    // enctype text/plain can carry a JSON-looking body: {"spiffe_id":"...","pad":"="}
    { path: '/v1/kill', enctype: 'text/plain', name: `{"spiffe_id":"${ORCH}","pad":"`, value: '"}' },
    { path: '/v1/killall', enctype: 'application/x-www-form-urlencoded', name: 'reason', value: 'csrf' },
    { path: '/v1/killall', enctype: 'multipart/form-data', name: 'reason', value: 'csrf' },
  ];
  const noCorsFetches = 20;
  const page = `<!doctype html><meta charset="utf-8"><title>hostile</title>
${forms.map((f, i) => `<iframe name="sink${i}"></iframe><form id="f${i}" method="POST" action="${admin}${f.path}" enctype="${f.enctype}" target="sink${i}"><input name='${f.name}' value='${f.value}'></form>`).join('\n')}
<script>
for (let i = 0; i < ${forms.length}; i++) document.getElementById('f' + i).submit();
const body = JSON.stringify({ spiffe_id: ${JSON.stringify(ORCH)} });
for (let i = 0; i < ${noCorsFetches}; i++) {
  const path = i % 2 ? '/v1/kill' : '/v1/killall';
  // In no-cors mode the browser drops the Authorization and JSON content-type headers.
  fetch(${JSON.stringify(admin)} + path, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'application/json', authorization: 'Bearer guess' + i }, body: i % 4 === 1 ? new Blob([body]) : body }).catch(() => {});
}
</script>`;
  const hostile = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => hostile.close(() => r())));
  const hostileOrigin = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
  t.not(hostileOrigin, admin, 'another origin on the same loopback address');

  const guardBefore = refusedByGuard();
  const authBefore = authFailures();
  const ctx = await browser.newContext();
  const tab = await ctx.newPage();
  await tab.goto(hostileOrigin + '/');
  const expected = forms.length + noCorsFetches;
  await waitUntil(() => refusedByGuard() - guardBefore >= expected, `${expected} browser requests refused by the guard`, { timeoutMs: 60_000 });
  t.ok(refusedByGuard() - guardBefore >= expected, 'every form post and no-cors fetch reached the admin listener and was refused');
  t.equal(authFailures() - authBefore, 0, 'none of them reached authentication or fed the throttle');
  t.same(mesh.server.revocations.current().size, 0, 'nothing revoked');
  t.equal(await orchestratorServed(mesh), 200, 'the orchestrator is still served');
  const ok = await post(admin, '/v1/restore', { ...JSON_TYPE, ...bearer(token) }, '{"all":true}');
  t.equal(ok.status, 200, 'the right token works right after the attack');
  await ctx.close();
});
