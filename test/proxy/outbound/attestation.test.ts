/**
 * The attestation interceptor against a real local HTTP server playing the peer's gate: which
 * evidence fields each request carries, how challenges are answered, when the route counts its
 * evidence as accepted. Through undici's own compose() and request(), and through the proxy's
 * forwarding path (composeLegacy + forwardRequestThen) with the body streamed by a client.
 */
import t, { type Test } from 'tap';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Pool } from '../../../src/undici/pool.js';
import { composeLegacy } from '../../../src/undici/handler.js';
import { ExchangeFailure, forwardRequestThen, type ForwardResult } from '../../../src/proxy/forward.js';
import { forwardRequestHeaders } from '../../../src/proxy/headers.js';
import { MAX_REPLAY_BYTES, attestationInterceptor, type AttestedRoute } from '../../../src/proxy/outbound/attestation.js';
import type { SessionEvidence } from '../../../src/proxy/outbound/evidence.js';
import type { PreparedEvidence } from '../../../src/attestation/attester.js';

const SESSION: PreparedEvidence = { header: 'session-evidence', id: 'session-id' };

/** What the peer saw of one request. */
interface Seen {
  evidence?: string;
  ref?: string;
  nonce?: string;
  body: string;
}

/** The peer: `answer` decides each response from what the request carried. */
async function peer(t: Test, answer: (seen: Seen, n: number) => { status: number; challenge?: string }) {
  const seen: Seen[] = [];
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = { body: Buffer.concat(chunks).toString() };
      if (typeof req.headers['attest-evidence'] === 'string') s.evidence = req.headers['attest-evidence'];
      if (typeof req.headers['attest-evidence-ref'] === 'string') s.ref = req.headers['attest-evidence-ref'];
      if (typeof req.headers['attest-nonce'] === 'string') s.nonce = req.headers['attest-nonce'];
      seen.push(s);
      const a = answer(s, seen.length);
      res.writeHead(a.status, a.challenge ? { 'attest-challenge': a.challenge, 'content-type': 'application/json' } : { 'content-type': 'text/plain' });
      res.end(a.challenge ? '{"error":"Attestation required"}' : `answer ${seen.length}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 2 });
  t.teardown(async () => {
    await pool.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { pool, seen };
}

/** Session evidence as a generation holds it; `fresh` records the nonces it was asked to cover. */
function evidence(o: { ready?: boolean; fail?: boolean } = {}) {
  const nonces: string[] = [];
  const e: SessionEvidence = {
    ready: o.ready ? SESSION : undefined,
    get: () => (o.fail ? Promise.reject(new Error('no TEE here')) : Promise.resolve(SESSION)),
    fresh: async (nonce) => {
      nonces.push(Buffer.from(nonce).toString('hex'));
      return { header: `fresh-over-${Buffer.from(nonce).toString('hex')}`, id: 'fresh-id' };
    },
  };
  return { e, nonces };
}

async function send(d: Dispatcher, o: { method?: string; body?: Buffer | Readable; length?: number } = {}) {
  const headers = ['x-request-id', 'r1'];
  if (o.length !== undefined) headers.push('content-length', String(o.length));
  try {
    const r = await d.request({ path: '/action', method: (o.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: o.body ?? null });
    return { status: r.statusCode, text: await r.body.text(), headers: r.headers };
  } catch (err) {
    return { failure: (err as ExchangeFailure).failure, err };
  }
}

const ok = () => ({ status: 200 });

t.test('first request carries the full evidence; a 2xx marks it accepted, the next carries the ref', async (t) => {
  const { pool, seen } = await peer(t, ok);
  const route: AttestedRoute = {};
  const { e } = evidence();
  const d = pool.compose(attestationInterceptor({ route, evidence: e, bodyProgressTimeoutMs: 10_000 }));
  t.equal((await send(d)).status, 200);
  t.equal(route.ackedEvidenceId, SESSION.id);
  (e as { ready?: PreparedEvidence }).ready = SESSION;
  t.equal((await send(d)).status, 200);
  t.same(seen, [{ evidence: SESSION.header, body: '' }, { ref: SESSION.id, body: '' }]);
});

t.test('a refusal before the gate looked does not mark the evidence accepted', async (t) => {
  for (const status of [403, 429, 500]) {
    const { pool } = await peer(t, () => ({ status }));
    const route: AttestedRoute = {};
    const d = pool.compose(attestationInterceptor({ route, evidence: evidence().e, bodyProgressTimeoutMs: 10_000 }));
    t.equal((await send(d)).status, status);
    t.equal(route.ackedEvidenceId, undefined, `${status} leaves the route unacknowledged`);
  }
});

t.test("challenge 'evidence': the ref is replaced by the full evidence, with the body replayed", async (t) => {
  const { pool, seen } = await peer(t, (s) => (s.evidence ? { status: 201 } : { status: 401, challenge: 'evidence' }));
  const route: AttestedRoute = { ackedEvidenceId: SESSION.id };
  const d = pool.compose(attestationInterceptor({ route, evidence: evidence({ ready: true }).e, bodyProgressTimeoutMs: 10_000 }));
  const r = await send(d, { method: 'POST', body: Buffer.from('payload'), length: 7 });
  t.equal(r.status, 201, 'the agent sees the replay answer, never the challenge');
  t.equal(r.text, 'answer 2');
  t.same(seen, [{ ref: SESSION.id, body: 'payload' }, { evidence: SESSION.header, body: 'payload' }]);
  t.equal(route.ackedEvidenceId, SESSION.id);
});

t.test("warm bodiless request challenged: the route forgets its ref and sends the full evidence", async (t) => {
  const { pool, seen } = await peer(t, (s) => (s.evidence ? { status: 200 } : { status: 401, challenge: 'evidence' }));
  const route: AttestedRoute = { ackedEvidenceId: SESSION.id };
  const d = pool.compose(attestationInterceptor({ route, evidence: evidence({ ready: true }).e, bodyProgressTimeoutMs: 10_000 }));
  t.equal((await send(d)).status, 200);
  t.same(seen, [{ ref: SESSION.id, body: '' }, { evidence: SESSION.header, body: '' }]);
  t.equal(route.ackedEvidenceId, SESSION.id, 'accepted again');
});

t.test('challenge nonce=: fresh evidence over the nonce, sent with the nonce; not the session evidence', async (t) => {
  const nonce = Buffer.from('0123456789abcdef').toString('base64url');
  const { pool, seen } = await peer(t, (s) => (s.nonce ? { status: 200 } : { status: 401, challenge: `nonce=${nonce}` }));
  const route: AttestedRoute = {};
  const { e, nonces } = evidence();
  const d = pool.compose(attestationInterceptor({ route, evidence: e, bodyProgressTimeoutMs: 10_000 }));
  t.equal((await send(d, { method: 'POST', body: Buffer.from('x'), length: 1 })).status, 200);
  t.same(nonces, [Buffer.from('0123456789abcdef').toString('hex')]);
  t.same(seen[1], { evidence: `fresh-over-${nonces[0]}`, nonce, body: 'x' });
  t.equal(route.ackedEvidenceId, undefined, 'fresh evidence is not the session evidence');
});

t.test('one replay only: a second challenge reaches the caller', async (t) => {
  const { pool, seen } = await peer(t, () => ({ status: 401, challenge: 'evidence' }));
  const d = pool.compose(attestationInterceptor({ route: {}, evidence: evidence().e, bodyProgressTimeoutMs: 10_000 }));
  const r = await send(d);
  t.equal(r.status, 401);
  t.equal(r.headers?.['attest-challenge'], 'evidence');
  t.equal(seen.length, 2);
});

t.test('failures the interceptor answers itself', async (t) => {
  const cases: { name: string; challenge?: string; evidence?: { fail: boolean }; body?: () => { body: Readable; length?: number }; reason: string; status: number }[] = [
    { name: 'unknown challenge', challenge: 'quote-please', reason: 'attestation_challenge_unknown', status: 502 },
    { name: 'attester failing', evidence: { fail: true }, reason: 'attester_error', status: 502 },
    { name: 'chunked body challenged', challenge: 'evidence', body: () => ({ body: Readable.from([Buffer.from('a'), Buffer.from('b')]) }), reason: 'attestation_replay_too_large', status: 413 },
    {
      name: 'body over the replay limit challenged',
      challenge: 'evidence',
      body: () => ({ body: Readable.from([Buffer.alloc(MAX_REPLAY_BYTES + 1, 0x61)]), length: MAX_REPLAY_BYTES + 1 }),
      reason: 'attestation_replay_too_large',
      status: 413,
    },
  ];
  for (const c of cases) {
    const { pool, seen } = await peer(t, () => (c.challenge ? { status: 401, challenge: c.challenge } : { status: 200 }));
    const d = pool.compose(attestationInterceptor({ route: {}, evidence: evidence(c.evidence).e, bodyProgressTimeoutMs: 10_000 }));
    const r = await send(d, { method: 'POST', ...(c.body ? c.body() : {}) });
    t.equal(r.failure?.reason, c.reason, `${c.name}: reason`);
    t.equal(r.failure?.status, c.status, `${c.name}: status`);
    t.equal(r.failure?.local, true, `${c.name}: failed on this side`);
    if (c.body) t.equal(seen[0]?.evidence, SESSION.header, `${c.name}: an unreplayable body carried the full evidence`);
    if (c.evidence) t.equal(seen.length, 0, `${c.name}: nothing was sent`);
  }
});

t.test("through the proxy's forwarding path: a streamed upload is buffered, challenged and replayed", async (t) => {
  const { pool, seen } = await peer(t, (s) => (s.evidence ? { status: 200 } : { status: 401, challenge: 'evidence' }));
  const route: AttestedRoute = { ackedEvidenceId: SESSION.id };
  const d = composeLegacy(pool, attestationInterceptor({ route, evidence: evidence({ ready: true }).e, bodyProgressTimeoutMs: 10_000 }));
  const results: ForwardResult[] = [];
  const front = http.createServer((req, res) => {
    const headers = forwardRequestHeaders(req.rawHeaders, undefined);
    forwardRequestThen(d, req, res, { path: req.url!, headers, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000 }, (r) => results.push(r));
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    front.closeAllConnections();
    front.close();
  });
  const body = 'x'.repeat(1000);
  const answer = await fetch(`http://127.0.0.1:${(front.address() as AddressInfo).port}/upload`, { method: 'POST', body, headers: { 'content-length': '1000' } });
  t.equal(answer.status, 200);
  t.equal(await answer.text(), 'answer 2');
  t.same(results, [200]);
  t.same(
    seen.map((s) => [s.ref, s.evidence, s.body.length]),
    [
      [SESSION.id, undefined, 1000],
      [undefined, SESSION.header, 1000],
    ],
  );
});
