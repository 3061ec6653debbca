/** The admission filter: a turn now, a bounded wait, 429 beyond. */
import t from 'tap';
import { admissionFilter } from '../../../src/proxy/inbound/filters/admission.js';
import { PeerAdmission, type PeerAdmissionLimits } from '../../../src/proxy/peer-admission.js';
import { connection, context } from './fakes.js';

const limits = (o: Partial<PeerAdmissionLimits>): PeerAdmissionLimits => ({ maxInFlightPerPeer: 1, maxQueuedPerPeer: 4, maxQueueWaitMs: 60_000, ...o });

t.test('admission: table', async (t) => {
  const cases: [string, Partial<PeerAdmissionLimits>, string[], 'turn' | 'wait' | 'refused', boolean][] = [
    ['a free turn', {}, [], 'turn', true],
    ['share in use, queue open: waits', {}, [], 'wait', true],
    ['share in use, queue full: 429', { maxQueuedPerPeer: 0 }, [], 'refused', true],
    ['429 with an unread body closes the connection', { maxQueuedPerPeer: 0 }, ['content-length', '5'], 'refused', false],
    ['the wait runs out: 429', { maxQueueWaitMs: 1 }, [], 'refused', true],
  ];
  for (const [name, lim, raw, expected, keepAlive] of cases) {
    const admission = new PeerAdmission(256, limits(lim));
    const filter = admissionFilter(admission);
    const conn = connection();
    if (expected !== 'turn') t.equal(filter.onRequest(context({ conn })), undefined, `${name}: the first request takes the share`);
    const ctx = context({ conn, raw: ['host', 'app', ...raw] });
    const out = filter.onRequest(ctx);
    if (expected === 'turn') {
      t.equal(out, undefined, name);
      t.equal(ctx.holdsTurn, true, `${name}: holds a turn`);
      t.equal(ctx.slots, conn.slots, `${name}: the identity's share, kept on the connection`);
      continue;
    }
    t.ok(out instanceof Promise, `${name}: only the slow path returns a promise`);
    if (expected === 'wait') {
      admission.release(conn.slots!);
      t.equal(await out, undefined, `${name}: granted once a turn frees`);
      t.equal(ctx.holdsTurn, true);
      continue;
    }
    // The queue's timer does not hold the process open (unref): this test must, until it fires.
    const hold = setInterval(() => undefined, 1000);
    const refused = await out;
    clearInterval(hold);
    t.match(refused, { status: 429, reason: 'peer_concurrency_exceeded', headers: { 'retry-after': '1' }, body: '{"error":"Too many concurrent requests from this peer identity"}' }, name);
    t.equal(ctx.holdsTurn, false, `${name}: no turn`);
    t.equal(ctx.res.shouldKeepAlive, keepAlive, `${name}: keep-alive`);
  }
});
