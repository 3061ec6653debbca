/**
 * HTTP/1.1 pipelining on running sidecar processes: a client may have up to
 * MAX_PIPELINED_REQUESTS requests in progress on one connection (all answered, in order); a
 * connection that pipelines more is closed and counted, instead of every request it wrote
 * being dispatched at once (one connection could otherwise hold any number of them). A request
 * refused before its body arrived closes its connection rather than waiting for that body.
 */
import type net from 'node:net';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { MAX_PIPELINED_REQUESTS } from '../../src/lib/listener-limits.js';
import { SidecarProcesses, agentId, closed, connectPlain, connectTls } from '../helpers/sidecar-process.js';

/** Resolves once `count` status lines arrived (with them), or with what came before the close. */
function answers(socket: net.Socket, count: number): Promise<{ statuses: string[]; closed: boolean }> {
  return new Promise((resolve) => {
    let got = '';
    // Answers follow one another directly (a body has no trailing newline).
    const statuses = () => got.match(/HTTP\/1\.1 \d{3}/g) ?? [];
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (statuses().length >= count) finish(false);
    };
    const onClose = () => finish(true);
    const finish = (isClosed: boolean) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ statuses: statuses(), closed: isClosed });
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => undefined);
  });
}

const pipelined = (target: string, n: number) => `GET ${target} HTTP/1.1\r\nHost: service\r\n\r\n`.repeat(n);

t.test('pipelined requests on one connection', async (t) => {
  const procs = await SidecarProcesses.start();
  t.teardown(() => procs.close());

  t.test('outbound: up to the cap all are answered in order; over it the connection is closed', async (t) => {
    const ok = await connectPlain(procs.ports.outbound);
    const done = answers(ok, MAX_PIPELINED_REQUESTS);
    ok.write(pipelined('http://things/things/1', MAX_PIPELINED_REQUESTS));
    const served = await done;
    t.equal(served.statuses.length, MAX_PIPELINED_REQUESTS, 'every request within the cap is answered');
    t.ok(served.statuses.every((s) => s === 'HTTP/1.1 200'));
    t.equal(served.closed, false, 'the connection stays open');
    ok.destroy();

    const flood = await connectPlain(procs.ports.outbound);
    const cut = closed(flood);
    flood.write(pipelined('http://things/things/1', 2000));
    const got = await cut;
    t.ok((got.match(/HTTP\/1\.1 \d{3}/g) ?? []).length < 2000, 'the connection was closed before answering everything it wrote');
    t.ok((await procs.metric(procs.ports.adminOut, /^attest_sidecar_connections_refused_total\{.*direction="outbound".*reason="pipeline_limit"/)) >= 1);
    const agentAudit = path.join(procs.dir, 'agent-audit.log');
    await procs.until(async () => (readFileSync(agentAudit, 'utf8').includes('"reason":"pipeline_limit"') ? true : undefined), 'a pipeline_limit audit record');
    t.equal(procs.alive(), true);
  });

  t.test('inbound: a peer that pipelines over the cap is closed; the next connection is served', async (t) => {
    const a1 = await procs.clientTls(agentId('a1'));
    const flood = await connectTls(procs.ports.inbound, a1);
    const cut = closed(flood);
    flood.write(pipelined('/things/1', 2000));
    const got = await cut;
    t.ok((got.match(/HTTP\/1\.1 \d{3}/g) ?? []).length < 2000, 'the connection was closed before answering everything it wrote');
    t.ok((await procs.metric(procs.ports.adminIn, /^attest_sidecar_connections_refused_total\{.*direction="inbound".*reason="pipeline_limit"/)) >= 1);
    await procs.until(
      async () => (procs.auditRecords().some((r) => r.type === 'connection_refused' && r.reason === 'pipeline_limit') ? true : undefined),
      'a pipeline_limit audit record',
    );
    const next = await connectTls(procs.ports.inbound, a1);
    const done = answers(next, 2);
    next.write(pipelined('/things/1', 2));
    t.same((await done).statuses, ['HTTP/1.1 200', 'HTTP/1.1 200']);
    next.destroy();
    t.equal(procs.alive(), true);
  });

  t.test('a refusal before the request body arrived closes the connection (outbound and inbound)', async (t) => {
    const head = (target: string) => `POST ${target} HTTP/1.1\r\nHost: service\r\nContent-Length: 1000000\r\n\r\n{`;
    const out = await connectPlain(procs.ports.outbound);
    const outClosed = closed(out);
    out.write(head('http://nowhere/things/1'));
    const outAnswer = await outClosed;
    t.match(outAnswer, /^HTTP\/1\.1 404 /, 'unknown route refused');
    t.match(outAnswer, /\r\nconnection: close\r\n/i, 'and the connection closed, the body never awaited');

    const peer = await connectTls(procs.ports.inbound, await procs.clientTls(agentId('a1')));
    const inClosed = closed(peer);
    peer.write(head('/things/1'));
    const inAnswer = await inClosed;
    t.match(inAnswer, /^HTTP\/1\.1 403 /, 'unmapped action refused');
    t.match(inAnswer, /\r\nconnection: close\r\n/i, 'and the connection closed, the body never awaited');
    t.equal(procs.alive(), true);
  });
});
