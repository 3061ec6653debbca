/**
 * The health listener of an `attest-sidecar run` process: /healthz, /readyz and /metrics with
 * the admin listener's bodies, on an address other than loopback where this host has one, and
 * nothing else: no status, no status page, no kill switch API.
 */
import { networkInterfaces } from 'node:os';
import t from 'tap';
import net from 'node:net';
import { SidecarProcesses, closed } from '../helpers/sidecar-process.js';
import { freePort } from '../helpers/ports.js';

/** An IPv4 address of this host other than loopback (the pod IP in Kubernetes), else 127.0.0.1. */
function podLikeAddress(): { host: string; loopback: boolean } {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return { host: a.address, loopback: false };
  }
  return { host: '127.0.0.1', loopback: true };
}

const { host, loopback } = podLikeAddress();
const healthPort = await freePort();
const procs = await SidecarProcesses.start({ serviceTop: `health: { listen: "${host}:${healthPort}" }` });
t.teardown(() => procs.close());
const health = `http://${host}:${healthPort}`;
const admin = `http://127.0.0.1:${procs.ports.adminIn}`;
t.comment(loopback ? 'no non-loopback IPv4 address on this host: the health listener binds 127.0.0.1' : `health listener on ${host}`);

t.test('probes answer with the admin listener bodies', async (t) => {
  const h = await fetch(`${health}/healthz`);
  t.equal(h.status, 200);
  t.same(await h.json(), await (await fetch(`${admin}/healthz`)).json());
  const r = await fetch(`${health}/readyz`);
  t.equal(r.status, 200);
  const ready = (await r.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> };
  t.equal(ready.ready, true);
  t.same(Object.keys(ready.checks), Object.keys(((await (await fetch(`${admin}/readyz`)).json()) as { checks: object }).checks), 'the same checks');
  t.notOk('draining' in ready.checks, 'no draining check while serving');
  const m = await fetch(`${health}/metrics`);
  t.equal(m.status, 200);
  const text = await m.text();
  t.match(text, /attest_sidecar_svid_expiry_seconds \d/);
  t.match(m.headers.get('content-type'), /text\/plain/);
  const om = await fetch(`${health}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
  t.match(om.headers.get('content-type'), /openmetrics/);
  t.match(await om.text(), /# EOF\n$/);
});

t.test('nothing else: status, status page and the admin API are 404 JSON', async (t) => {
  for (const [method, p] of [
    ['GET', '/status'],
    ['GET', '/'],
    ['GET', '/v1/revocations'],
    ['POST', '/v1/kill'],
    ['POST', '/v1/killall'],
    ['POST', '/v1/restore'],
    ['GET', '/healthz/../status'],
    ['GET', '/metricsx'],
  ] as const) {
    const res = await fetch(`${health}${p}`, { method, ...(method === 'POST' ? { body: '{"spiffe_id":"spiffe://proc.test/agent/a1","reason":"x"}', headers: { 'content-type': 'application/json' } } : {}) });
    t.equal(res.status, 404, `${method} ${p}`);
    t.match(res.headers.get('content-type'), /application\/json/);
    t.match(await res.json(), { error: /health listener/ });
  }
  // The same paths exist on the admin listener: the 404s above are the health listener's doing.
  t.equal((await fetch(`${admin}/status`)).status, 200);
  const post = await fetch(`${health}/readyz`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
  t.equal(procs.alive(), true);
  const revoked = procs.auditRecords().filter((r) => r.type === 'revocation' || r.type === 'admin_action');
  t.same(revoked, [], 'no admin action happened');
});

t.test('malformed bytes get the listener limits JSON answers', async (t) => {
  const s = net.connect(healthPort, host);
  s.on('error', () => undefined);
  await new Promise((resolve) => s.once('connect', resolve));
  s.write('NOT HTTP\r\n\r\n');
  t.match(await closed(s), /^HTTP\/1\.1 400 [^]*"error"/);
});
