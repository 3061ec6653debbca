/**
 * `inbound.limits` / `outbound.limits` timeouts on running sidecar processes: idle and
 * slow-header connections are closed, and a TLS handshake that never finishes is cut and
 * audited. Waits are condition-based with generous bounds; no test asserts how fast something
 * happened.
 */
import t from 'tap';
import { viaProxy } from '../helpers/mesh.js';
import { SidecarProcesses, agentId, closed, connectPlain, connectTls, requestOn } from '../helpers/sidecar-process.js';

t.test('timeouts', async (t) => {
  const procs = await SidecarProcesses.start({
    // Inbound: the idle bound is well above the 200 ms between trickled header bytes, so only the
    // headers bound can fire there; a silent fresh connection meets the headers bound first.
    // Outbound: the idle bound is the shorter one.
    inboundExtra: '  limits: { headers_timeout: 1s, idle_timeout: 3s, handshake_timeout: 1s }',
    outboundExtra: '  limits: { headers_timeout: 10s, idle_timeout: 1s }',
  });
  t.teardown(() => procs.close());
  const client = await procs.clientTls(agentId('a1'));

  t.test('a fresh connection that sends nothing is closed (outbound, inbound after TLS)', async (t) => {
    t.equal(await closed(await connectPlain(procs.ports.outbound)), '');
    t.equal(await closed(await connectTls(procs.ports.inbound, client)), '');
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_connections_refused_total\{.*direction="inbound".*reason="idle_timeout"/)) >= 1, 'counted (inbound)');
    t.ok((await procs.metric(procs.ports.adminOut, /^attest_sidecar_connections_refused_total\{.*direction="outbound".*reason="idle_timeout"/)) >= 1, 'counted (outbound)');
  });

  t.test('a kept-alive connection is closed when idle after its request', async (t) => {
    const s = await connectTls(procs.ports.inbound, client);
    const done = closed(s);
    t.match(await requestOn(s, '/things/1'), /^HTTP\/1\.1 200/);
    await done;
    t.pass('closed after the answer');
  });

  t.test('a connection that trickles its headers gets 408 and is closed (inbound)', async (t) => {
    {
      const s = await connectTls(procs.ports.inbound, client);
      const done = closed(s, 60_000);
      s.write('GET /things/1 HTTP/1.1\r\nHost: things\r\nX-Slow: ');
      // One byte at a time, often enough that the idle bound never fires: only the headers bound can.
      const drip = setInterval(() => s.writable && s.write('a'), 200);
      const answer = await done.finally(() => clearInterval(drip));
      t.match(answer, /^HTTP\/1\.1 408 /);
      t.match(answer, /\{"error":"Request headers not received in time"\}/);
    }
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_connections_refused_total\{.*direction="inbound".*reason="headers_timeout"/)) >= 1);
    await procs.until(async () => (procs.auditRecords().some((r) => r.type === 'connection_refused' && r.reason === 'headers_timeout') ? true : undefined), 'a headers_timeout audit record');
  });

  t.test('a client that never finishes the TLS handshake is cut and audited', async (t) => {
    const s = await connectPlain(procs.ports.inbound);
    s.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a TLS record, never completed
    await closed(s);
    await procs.until(async () => (procs.auditRecords().some((r) => r.type === 'peer_rejected' && r.reason === 'tls_handshake_timeout') ? true : undefined), 'a tls_handshake_timeout audit record');
    t.pass('audited');
  });

  t.test('the sidecars still serve', async (t) => {
    const r = await viaProxy(`http://127.0.0.1:${procs.ports.outbound}`, 'GET', 'http://things/things/1');
    t.equal(r.status, 200, r.body);
    t.equal(procs.alive(), true);
  });
});
