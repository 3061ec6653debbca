/**
 * Fail-closed behaviour around the edges: no SVID yet, upstream down, policy hot reload with a
 * broken file.
 */
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { OUTBOUND_LIMIT_DEFAULTS } from '../../src/lib/listener-limits.js';
import { MemoryAuditSink } from '../../src/audit/record.js';
import { Sidecar } from '../../src/sidecar.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import type { IdentityState, X509Source } from '../../src/spiffe/source.js';
import { DEFAULT_POLICY, TestMesh, idOf, silentLogger, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start({ agents: ['orchestrator', 'harness-writer'] });
t.teardown(() => mesh.close());

const until = async (cond: () => Promise<boolean> | boolean, what: string, ms = 30_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
};

t.test('without an SVID: outbound answers 503 and readiness is false', async (t) => {
  const source = new WorkloadApiX509Source({ endpoint: `unix://${path.join(mesh.dir, 'nobody-listens.sock')}` });
  source.start();
  const config = { ...mesh.agentConfig('lonely', idOf('control-plane')), identity: { source: 'workload-api' as const, socket: 'unused', startupTimeoutMs: 300 } };
  const s = await Sidecar.start({ config, source, logger: silentLogger(), audit: new MemoryAuditSink() });
  t.teardown(async () => {
    await s.close();
    await source.close();
  });
  const r = await viaProxy(`http://127.0.0.1:${s.outbound!.address()!.port}`, 'GET', 'http://control-plane/agents');
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body), { error: 'No valid SVID: the sidecar has no unexpired identity' });
  const ready = await fetch(`${mesh.adminOf(s)}/readyz`);
  t.equal(ready.status, 503);
  const body = (await ready.json()) as { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> };
  t.equal(body.ready, false);
  t.equal(body.checks.svid!.ok, false);
  t.equal(body.checks.outbound_listener!.ok, true);
  t.equal((await fetch(`${mesh.adminOf(s)}/healthz`)).status, 200, 'alive while not ready');
});

t.test('upstream down: 503 with a JSON reason', async (t) => {
  const s = await Sidecar.start({
    config: {
      ...mesh.agentConfig('orphan', idOf('control-plane')),
      outbound: {
        listen: { host: '127.0.0.1', port: 0 },
        allowNonLoopback: false,
        routes: [{ name: 'control-plane', upstream: 'https://127.0.0.1:1', tls: 'spiffe', serverId: idOf('control-plane'), connectTimeoutMs: 1_000, requestTimeoutMs: 2_000, injectHeaders: [] }],
        limits: { ...OUTBOUND_LIMIT_DEFAULTS },
      },
    },
    source: await (async () => {
      const { endpoint } = await mesh.issuer.registerWorkload(idOf('orphan'));
      const src = new WorkloadApiX509Source({ endpoint });
      src.start();
      t.teardown(() => src.close());
      return src;
    })(),
    logger: silentLogger(),
    audit: new MemoryAuditSink(),
  });
  t.teardown(() => s.close());
  const r = await viaProxy(`http://127.0.0.1:${s.outbound!.address()!.port}`, 'GET', 'http://control-plane/agents');
  t.equal(r.status, 503);
  t.match(JSON.parse(r.body), { error: /Upstream unavailable \(ECONNREFUSED\)/ });
});

t.test('app down behind the inbound sidecar: 503 to the agent, audited as error', async (t) => {
  await mesh.app.close();
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.equal(r.status, 503);
  t.match(JSON.parse(r.body).error, /Upstream unavailable/);
  const last = mesh.serverAudit.records.at(-1)!;
  t.equal(last.decision, 'error');
  t.equal(last.reason, 'upstream_unavailable');
  await new Promise<void>((r) => mesh.app.server.listen(Number(new URL(mesh.appUrl).port), '127.0.0.1', () => r()));
});

t.test('a broken policy reload keeps the last good policy; a good one applies', async (t) => {
  const write = (text: string) => {
    const tmp = `${mesh.policyFile}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, mesh.policyFile); // atomic replace, as config management tools do
  };
  const harness = () => viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' });
  t.equal((await harness()).status, 403);
  const failures = async () =>
    /result="failure"[^\n]*\} (\d+)/.exec(await mesh.server.metrics.registry.getSingleMetricAsString('attest_sidecar_policy_reloads_total'))?.[1] ?? '0';
  write('agents:\n  - name: orchestrator\n    spiffe_id: [unclosed\n');
  await until(async () => (await failures()) === '1', 'the reload failure to be counted');
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200, 'old policy still allows');
  t.equal((await harness()).status, 403, 'old policy still denies');
  t.equal((await viaProxy(mesh.proxyOf('harness-writer'), 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' })).status, 200);

  const before = (mesh.server.status().policy as { version: string }).version;
  write(DEFAULT_POLICY.replace('allowed_actions: [task.dispatch,', 'allowed_actions: [fuzzer.write_harness, task.dispatch,'));
  await until(async () => (await harness()).status === 200, 'the new policy to apply');
  t.not((mesh.server.status().policy as { version: string }).version, before, 'policy version changed');
});

t.test('a kept-alive connection follows policy reloads: its route cache is keyed by the policy', async (t) => {
  const write = (text: string) => {
    writeFileSync(`${mesh.policyFile}.tmp`, text);
    renameSync(`${mesh.policyFile}.tmp`, mesh.policyFile);
  };
  const handshakes = async () =>
    Number(/attest_sidecar_inbound_connections_total\{[^}]*\} (\d+)/.exec(await mesh.server.metrics.registry.getSingleMetricAsString('attest_sidecar_inbound_connections_total'))?.[1] ?? NaN);
  const list = () => viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.teardown(() => write(DEFAULT_POLICY));
  // Same method and target again and again on one pooled connection: cache hits.
  for (let i = 0; i < 3; i++) t.equal((await list()).status, 200);
  const before = await handshakes();
  t.ok(before >= 1, `handshakes counted (${before})`);
  write(DEFAULT_POLICY.replace('agent.status, agent.list, upload', 'agent.status, upload'));
  await until(async () => (await list()).status === 403, 'the reload to deny agent.list');
  const denied = await list();
  t.same(JSON.parse(denied.body), { error: "Action 'agent.list' not permitted" });
  // A different target on the same connection is decided on its own, and a malformed one is refused.
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents/7/status')).status, 200);
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents/%2e%2e/status')).status, 400);
  t.equal((await list()).status, 403, 'still denied after other targets');
  t.equal(await handshakes(), before, 'all of it over the connection that was already open');
  write(DEFAULT_POLICY);
  await until(async () => (await list()).status === 200, 'the restored policy to allow agent.list again');
});

/** An identity source that never rotates: the SVID it was given is all there is. */
class FrozenSource implements X509Source {
  constructor(private readonly state: IdentityState) {}
  current() {
    return this.state;
  }
  subscribe() {
    return () => undefined;
  }
  waitReady() {
    return Promise.resolve(this.state);
  }
  health() {
    return { connected: true };
  }
  close() {
    return Promise.resolve();
  }
}

t.test('own SVID expires without rotation: pooled connections dropped, 503, not ready', async (t) => {
  const issued = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'), { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 6_000) }); // room for the start-up on a loaded machine
  const source = new FrozenSource({ svid: issued.svid, bundles: new BundleSet([mesh.issuer.ca.bundle()]), generation: 1 });
  const s = await Sidecar.start({ config: mesh.agentConfig('frozen', idOf('control-plane')), source, logger: silentLogger(), audit: new MemoryAuditSink() });
  t.teardown(() => s.close());
  const proxy = `http://127.0.0.1:${s.outbound!.address()!.port}`;
  const serial = issued.svid.certificates[0]!.serialNumber;
  const fromFrozen = () => mesh.server.inbound!.sessions().filter((s) => s.peer.serial === serial).length;

  t.equal((await viaProxy(proxy, 'GET', 'http://control-plane/agents')).status, 200);
  t.equal(fromFrozen(), 1, 'one pooled connection made with the short-lived SVID');
  await new Promise((r) => setTimeout(r, issued.svid.notAfter.getTime() - Date.now() + 200));
  await until(() => fromFrozen() === 0, 'the pooled connection to be dropped');
  t.pass('the connection made with the expired SVID is gone');
  const r = await viaProxy(proxy, 'GET', 'http://control-plane/agents');
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body), { error: 'No valid SVID: the sidecar has no unexpired identity' });
  const ready = (await (await fetch(`${mesh.adminOf(s)}/readyz`)).json()) as { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> };
  t.equal(ready.ready, false);
  t.match(ready.checks.svid!.detail, /^SVID expired at /);
});
