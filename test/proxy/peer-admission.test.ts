/**
 * PeerAdmission's bookkeeping: per-identity shares, bounded queues and waits, turns taken in
 * rotation between identities when all connections are busy. (Over real sockets, with the
 * inbound listener: test/e2e/peer-fairness.test.ts.)
 */
import { EventEmitter } from 'node:events';
import t from 'tap';
import { PeerAdmission } from '../../src/proxy/peer-admission.js';

const tick = () => new Promise((r) => setImmediate(r));

t.test('an identity over its share waits, then is refused when its queue is full', async (t) => {
  const a = new PeerAdmission(10, { maxInFlightPerPeer: 2, maxQueuedPerPeer: 1, maxQueueWaitMs: 60_000 });
  const p = a.attach('spiffe://td/p');
  t.ok(a.tryAcquire(p));
  t.ok(a.tryAcquire(p));
  t.notOk(a.tryAcquire(p), 'over the share');
  const events: string[] = [];
  a.wait(p, new EventEmitter(), () => events.push('granted 1'), () => events.push('refused 1'));
  a.wait(p, new EventEmitter(), () => events.push('granted 2'), () => events.push('refused 2'));
  t.same(events, ['refused 2'], 'the queue holds one');
  a.release(p);
  await tick();
  t.same(events, ['refused 2', 'granted 1'], 'a released turn goes to the waiting request');
  t.notOk(a.tryAcquire(p), 'still at its share');
  const other = a.attach('spiffe://td/other');
  t.ok(a.tryAcquire(other), 'another identity is not affected');
});

t.test('a wait is bounded, and a request that leaves stops waiting', async (t) => {
  const a = new PeerAdmission(10, { maxInFlightPerPeer: 1, maxQueuedPerPeer: 5, maxQueueWaitMs: 50 });
  const p = a.attach('spiffe://td/p');
  t.ok(a.tryAcquire(p));
  const events: string[] = [];
  const leaving = new EventEmitter();
  a.wait(p, leaving, () => events.push('granted left'), () => events.push('refused left'));
  a.wait(p, new EventEmitter(), () => events.push('granted'), () => events.push('refused'));
  leaving.emit('close');
  const end = Date.now() + 20_000;
  while (events.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  t.same(events, ['refused'], 'the remaining waiter is refused when its wait runs out; the one that left is never told');
  a.release(p);
  await tick();
  t.same(events, ['refused'], 'nothing is granted to requests no longer waiting');
  t.ok(a.tryAcquire(p), 'the turn is free again');
});

t.test('when all connections are busy, waiting identities take turns', async (t) => {
  const a = new PeerAdmission(4, { maxInFlightPerPeer: 4, maxQueuedPerPeer: 10, maxQueueWaitMs: 60_000 });
  const big = a.attach('spiffe://td/big');
  for (let i = 0; i < 4; i++) t.ok(a.tryAcquire(big));
  const small = a.attach('spiffe://td/small');
  t.notOk(a.tryAcquire(small), 'the pool is full');
  const order: string[] = [];
  for (let i = 0; i < 3; i++) a.wait(big, new EventEmitter(), () => order.push(`big ${i}`), () => order.push('refused'));
  for (let i = 0; i < 2; i++) a.wait(small, new EventEmitter(), () => order.push(`small ${i}`), () => order.push('refused'));
  for (let i = 0; i < 4; i++) {
    a.release(big);
    await tick();
  }
  t.same(order, ['big 0', 'small 0', 'big 1', 'small 1'], 'turns alternate between the identities, each in its own order');
});

t.test('an identity that leaves takes nothing with it', async (t) => {
  const a = new PeerAdmission(2, { maxInFlightPerPeer: 2, maxQueuedPerPeer: 2, maxQueueWaitMs: 60_000 });
  const first = a.attach('spiffe://td/p');
  t.ok(a.tryAcquire(first));
  a.release(first);
  a.detach(first);
  const again = a.attach('spiffe://td/p');
  t.not(again, first, 'an idle identity with no connection is forgotten');
  t.ok(a.tryAcquire(again) && a.tryAcquire(again), 'with its whole share');
  const second = a.attach('spiffe://td/p');
  t.equal(second, again, 'connections of one identity share one entry');
  t.notOk(a.tryAcquire(second), 'and one share');
});
