/**
 * Session evidence is produced once per identity generation (with the real sim attester), a
 * failed production is retried on the next request, and nonce evidence is never cached.
 */
import t from 'tap';
import { type Attester } from '../../../src/attestation/attester.js';
import { SimAttester } from '../../../src/attestation/sim/attester.js';
import { GenerationEvidence } from '../../../src/proxy/outbound/evidence.js';

function counting(failFirst = false): { attester: Attester; calls: (string | undefined)[] } {
  const sim = new SimAttester({ measurement: 'ab'.repeat(48) });
  const calls: (string | undefined)[] = [];
  const attester: Attester = {
    type: sim.type,
    produce: (spki, nonce) => {
      calls.push(nonce ? Buffer.from(nonce).toString('hex') : undefined);
      if (failFirst && calls.length === 1) return Promise.reject(new Error('TEE busy'));
      return sim.produce(spki, nonce);
    },
  };
  return { attester, calls };
}

t.test('once per generation, shared by every request', async (t) => {
  const { attester, calls } = counting();
  const e = new GenerationEvidence(attester, 7, Buffer.from('spki'));
  t.equal(e.ready, undefined, 'nothing before the first request');
  const [a, b] = await Promise.all([e.get(), e.get()]);
  t.equal(a, b);
  t.equal(await e.get(), a);
  t.equal(e.ready, a, 'ready for the warm path');
  t.same(calls, [undefined], 'produced once');
  t.equal(e.generation, 7);
});

t.test('a failed production is retried on the next request', async (t) => {
  const { attester, calls } = counting(true);
  const e = new GenerationEvidence(attester, 1, Buffer.from('spki'));
  await t.rejects(e.get(), /TEE busy/);
  const p = await e.get();
  t.ok(p.header.length > 0);
  t.equal(calls.length, 2);
});

t.test('nonce evidence is fresh every time and leaves the session evidence alone', async (t) => {
  const { attester, calls } = counting();
  const e = new GenerationEvidence(attester, 1, Buffer.from('spki'));
  const session = await e.get();
  const fresh = await e.fresh(Buffer.from('n1'));
  await e.fresh(Buffer.from('n1'));
  t.not(fresh.id, session.id);
  t.equal(e.ready, session);
  t.same(calls, [undefined, Buffer.from('n1').toString('hex'), Buffer.from('n1').toString('hex')], 'produced for each nonce request: not cached');
});
