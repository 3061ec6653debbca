/**
 * Revocation by expiry, end to end in the dev mesh: deleting a workload's registration in the
 * embedded issuer stops its rotation, and once its (short-lived) SVID expires the mesh refuses
 * it; agents still registered keep rotating and keep working.
 */
import t from 'tap';
import { TestMesh, viaProxy } from '../helpers/mesh.js';

const TTL_SECONDS = 4;

t.test('a deregistered workload is refused once its SVID expires', async (t) => {
  const mesh = await TestMesh.start({ svidTtlSeconds: TTL_SECONDS, agents: ['orchestrator', 'harness-writer'] });
  t.teardown(() => mesh.close());
  const orchestrator = mesh.agents.get('orchestrator')!;
  const proxy = mesh.proxyOf('orchestrator');
  t.equal((await viaProxy(proxy, 'GET', 'http://control-plane/agents')).status, 200);

  const orchestratorSerial = () => (orchestrator.status().svid as { serial: string } | null)?.serial;
  const serialBefore = orchestratorSerial();
  mesh.issuer.deregisterWorkload(mesh.agents.get('orchestrator')!.status().spiffe_id as string);
  const notAfter = Date.parse((orchestrator.status().svid as { not_after: string }).not_after);
  // Within one TTL (X.509 times are whole seconds: the issuer rounds the expiry up by < 1 s).
  t.ok(notAfter - Date.now() <= TTL_SECONDS * 1000 + 1000, 'the last SVID expires within one TTL');

  // Until then the agent still works (revocation by expiry is bounded by the TTL, not instant).
  const before = await viaProxy(proxy, 'GET', 'http://control-plane/agents');
  t.equal(before.status, 200);

  // Keep the harness writer busy across several of its rotations meanwhile.
  const writerOk: number[] = [];
  while (Date.now() < notAfter + 1_500) {
    writerOk.push((await viaProxy(mesh.proxyOf('harness-writer'), 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' })).status);
    await new Promise((r) => setTimeout(r, 250));
  }
  t.equal(orchestratorSerial(), serialBefore, 'no new SVID reached the deregistered workload');

  const after = await viaProxy(proxy, 'GET', 'http://control-plane/agents');
  t.equal(after.status, 503, 'its own sidecar stops: no valid SVID');
  t.same(JSON.parse(after.body), { error: 'No valid SVID: the sidecar has no unexpired identity' });
  const ready = await fetch(`${mesh.adminOf(orchestrator)}/readyz`);
  t.equal(ready.status, 503, 'and reports not ready');

  t.ok(writerOk.every((s) => s === 200), `the registered agent kept working through its rotations (${writerOk.length} calls)`);
  // The server holds no session of the expired identity (its connections were dropped at expiry).
  const orchestratorId = orchestrator.status().spiffe_id;
  const sessions = mesh.server.inbound!.sessions().filter((x) => x.peer.id === orchestratorId);
  t.equal(sessions.length, 0, 'no open session of the expired identity remains');
});
