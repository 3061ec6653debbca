/**
 * `inbound.limits` / `outbound.limits` on running sidecar processes: idle and slow-header
 * connections are closed, the total and per-peer connection caps refuse what exceeds them while
 * others still connect, and TLS handshake rejections are audited in aggregate. Waits are
 * condition-based with generous bounds; no test asserts how fast something happened.
 */
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { viaProxy } from '../helpers/mesh.js';
import { PROC_TD, SidecarProcesses, agentId } from '../helpers/sidecar-process.js';

/** Resolves with what the server sent once it closed the connection (bounded: rejects after `ms`). */
function closed(socket: net.Socket, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

function connectTls(port: number, options: ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...options, port });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

function connectPlain(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** One GET on an open connection; resolves with the status line, or 'closed' when the server closed it. */
function requestOn(socket: net.Socket, requestPath: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) finish(got.slice(0, got.indexOf('\r\n')));
    };
    const onClose = () => finish('closed');
    const finish = (v: string) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(v);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => undefined);
    socket.write(`GET ${requestPath} HTTP/1.1\r\nHost: service\r\n\r\n`);
  });
}

t.test('timeouts', async (t) => {
  const procs = await SidecarProcesses.start({
    inboundExtra: '  limits: { headers_timeout: 1s, idle_timeout: 1s, handshake_timeout: 1s }',
    outboundExtra: '  limits: { headers_timeout: 1s, idle_timeout: 1s }',
  });
  t.teardown(() => procs.close());
  const client = await procs.clientTls(agentId('a1'));

  t.test('a fresh connection that sends nothing is closed (outbound, inbound after TLS)', async (t) => {
    t.equal(await closed(await connectPlain(procs.ports.outbound)), '');
    t.equal(await closed(await connectTls(procs.ports.inbound, client)), '');
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_connections_refused_total\{.*direction="inbound".*reason="idle_timeout"/)) >= 1, 'counted');
  });

  t.test('a kept-alive connection is closed when idle after its request', async (t) => {
    const s = await connectTls(procs.ports.inbound, client);
    const done = closed(s);
    t.match(await requestOn(s, '/things/1'), /^HTTP\/1\.1 200/);
    await done;
    t.pass('closed after the answer');
  });

  t.test('a connection that trickles its headers gets 408 and is closed', async (t) => {
    for (const connect of [() => connectPlain(procs.ports.outbound), () => connectTls(procs.ports.inbound, client)]) {
      const s = await connect();
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
