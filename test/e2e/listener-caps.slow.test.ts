/**
 * `inbound.limits` / `outbound.limits` connection caps on running sidecar processes: the total
 * and per-peer caps refuse what exceeds them while others still connect, a slow-header client
 * meets the default headers bound, and TLS handshake rejections are audited in aggregate.
 */
import type net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { viaProxy } from '../helpers/mesh.js';
import { PROC_TD, SidecarProcesses, agentId, closed, connectPlain, connectTls, requestOn } from '../helpers/sidecar-process.js';

t.test('connection caps', async (t) => {
  const procs = await SidecarProcesses.start({
    inboundExtra: '  limits: { max_connections_per_peer: 3 }',
    outboundExtra: '  limits: { max_connections: 4 }',
  });
  t.teardown(() => procs.close());

  t.test('the per-peer cap refuses the fourth connection of one identity; another identity still connects', async (t) => {
    const a1 = await procs.clientTls(agentId('a1'));
    const held: tls.TLSSocket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await connectTls(procs.ports.inbound, a1);
      t.match(await requestOn(s, '/things/1'), /^HTTP\/1\.1 200/, `connection ${i + 1} of a1 is served`);
      held.push(s);
    }
    const fourth = await connectTls(procs.ports.inbound, a1).catch(() => undefined);
    if (fourth) t.equal(await requestOn(fourth, '/things/1'), 'closed', 'the fourth connection of a1 is closed');
    else t.pass('the fourth connection of a1 is closed during the handshake');
    const a2 = await connectTls(procs.ports.inbound, await procs.clientTls(agentId('a2')));
    t.match(await requestOn(a2, '/things/1'), /^HTTP\/1\.1 200/, 'a2 is still served');
    a2.destroy();
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_connections_refused_total\{.*direction="inbound".*reason="peer_connection_limit"/)) >= 1);
    await procs.until(
      async () => (procs.auditRecords().some((r) => r.type === 'connection_refused' && r.reason === 'peer_connection_limit' && r.peer === agentId('a1')) ? true : undefined),
      'a peer_connection_limit audit record naming a1',
    );
    // A closed connection frees its place.
    held.pop()!.destroy();
    await procs.until(async () => {
      const s = await connectTls(procs.ports.inbound, a1);
      const status = await requestOn(s, '/things/1');
      s.destroy();
      return /^HTTP\/1\.1 200/.test(status) ? true : undefined;
    }, 'a1 served again after closing one connection');
    for (const s of held) s.destroy();
  });

  t.test('the total cap refuses connections over it; freeing one lets the next in', async (t) => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await connectPlain(procs.ports.outbound);
      // A request answered on each proves the sidecar accepted it (and holds it, kept alive).
      t.match(await requestOn(s, 'http://things/things/1'), /^HTTP\/1\.1 200/);
      held.push(s);
    }
    const over = await connectPlain(procs.ports.outbound);
    t.equal(await closed(over), '', 'the fifth connection is closed without an answer');
    t.ok((await procs.metric(procs.ports.adminOut, /^attest_sidecar_connections_refused_total\{.*direction="outbound".*reason="connection_limit"/)) >= 1);
    const agentAudit = path.join(procs.dir, 'agent-audit.log');
    await procs.until(async () => (readFileSync(agentAudit, 'utf8').includes('"reason":"connection_limit"') ? true : undefined), 'a connection_limit audit record');
    held.pop()!.destroy();
    await procs.until(async () => {
      const r = await viaProxy(`http://127.0.0.1:${procs.ports.outbound}`, 'GET', 'http://things/things/1');
      return r.status === 200 ? true : undefined;
    }, 'a request served once a connection was freed');
    for (const s of held) s.destroy();
    t.equal(procs.alive(), true);
  });

  t.test('a connection that trickles its headers gets 408 and is closed (outbound, default headers_timeout)', async (t) => {
    const s = await connectPlain(procs.ports.outbound);
    const done = closed(s, 120_000);
    s.write('GET http://things/things/1 HTTP/1.1\r\nHost: things\r\nX-Slow: ');
    const drip = setInterval(() => s.writable && s.write('a'), 200);
    const answer = await done.finally(() => clearInterval(drip));
    t.match(answer, /^HTTP\/1\.1 408 /);
    t.match(answer, /\{"error":"Request headers not received in time"\}/);
  });

  t.test('TLS handshake rejections are audited, aggregated under a flood', async (t) => {
    const stranger = await DevCa.create({ trustDomain: PROC_TD });
    const foreign = await stranger.issueX509Svid(agentId('a1'), { ttlSeconds: 3600 });
    const foreignTls: ConnectionOptions = { host: '127.0.0.1', cert: foreign.certChainPem, key: foreign.keyPem, rejectUnauthorized: false };
    const attempt = (options: ConnectionOptions) =>
      new Promise<void>((resolve) => {
        const s = tls.connect({ ...options, port: procs.ports.inbound });
        const bound = setTimeout(() => s.destroy(), 20_000);
        s.on('error', () => resolve());
        s.on('close', () => {
          clearTimeout(bound);
          resolve();
        });
        // TLS 1.3: the client may finish before the server refuses its certificate; a read shows the refusal.
        s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      });
    const before = procs.auditRecords().filter((r) => r.type === 'peer_rejected').length;
    await attempt(foreignTls);
    await attempt({ host: '127.0.0.1', rejectUnauthorized: false }); // no client certificate
    const expired = await procs.ca.issueX509Svid(agentId('a1'), { notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() - 1_800_000) });
    await attempt({ host: '127.0.0.1', cert: expired.certChainPem, key: expired.keyPem, rejectUnauthorized: false });
    const single = await procs.until(async () => {
      const recs = procs.auditRecords().filter((r) => r.type === 'peer_rejected');
      return recs.length >= before + 3 ? recs : undefined;
    }, 'audit records of the three rejected handshakes');
    const reasons = new Set(single.map((r) => r.reason));
    t.ok(reasons.has('tls_certificate_untrusted'), `unknown CA audited: ${[...reasons].join(', ')}`);
    t.ok(reasons.has('tls_no_client_certificate'), `no certificate audited: ${[...reasons].join(', ')}`);
    t.ok(reasons.has('tls_certificate_expired'), `expired certificate audited: ${[...reasons].join(', ')}`);

    const FLOOD = 200;
    for (let i = 0; i < FLOOD; i += 20) await Promise.all(Array.from({ length: 20 }, () => attempt(foreignTls)));
    const counted = () =>
      procs
        .auditRecords()
        .filter((r) => r.type === 'peer_rejected' && r.reason === 'tls_certificate_untrusted')
        .reduce((sum, r) => sum + Number(r.count ?? 0), 0);
    // Written at the end of the aggregation window, with their count.
    await procs.until(async () => (counted() >= FLOOD + 1 ? true : undefined), `all ${FLOOD + 1} rejections counted in the audit`, 60_000);
    const lines = procs.auditRecords().filter((r) => r.type === 'peer_rejected' && r.reason === 'tls_certificate_untrusted').length;
    t.ok(lines <= 10, `${FLOOD + 1} rejections took ${lines} audit lines`);
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_peer_rejections_total\{.*reason="tls_certificate_untrusted"/)) >= FLOOD + 1, 'every rejection counted in the metric');
    t.equal(procs.alive(), true);
  });
});
