/** The inbound chain as built from the deps: its order, and which filters a config leaves out. */
import t from 'tap';
import { AttestationGate } from '../../../src/proxy/attestation-gate.js';
import { inboundChain, type InboundDeps } from '../../../src/proxy/inbound/listener.js';
import type { InboundContext } from '../../../src/proxy/inbound/context.js';
import { PeerAdmission, DEFAULT_PEER_ADMISSION } from '../../../src/proxy/peer-admission.js';
import { SpendGate } from '../../../src/proxy/spend.js';
import { RevocationState } from '../../../src/revocation/state.js';
import type { ChainEnds } from '../../../src/proxy/chain.js';
import type { Refusal } from '../../../src/reasons.js';
import { connection, context, NOW } from './fakes.js';

const base = {
  config: { listen: { host: '127.0.0.1', port: 0 }, app: 'http://127.0.0.1:1', actions: [], requestTimeoutMs: 1000, limits: {} },
  policy: () => undefined,
  now: () => NOW,
} as unknown as InboundDeps;
const gate = new AttestationGate({ simKeys: [] }, () => NOW);
const spend = Object.create(SpendGate.prototype) as SpendGate;
const revocations = () => RevocationState.empty();

interface Seen {
  routed: number;
  refused: Refusal[];
  failed: unknown[];
}

function ends(): ChainEnds<InboundContext> & Seen {
  const seen: Seen = { routed: 0, refused: [], failed: [] };
  return Object.assign(seen, {
    route: () => void seen.routed++,
    refuse: (_: InboundContext, r: Refusal) => void seen.refused.push(r),
    fail: (_: InboundContext, err: unknown) => void seen.failed.push(err),
  });
}

t.test('chain order with and without revocations, gate and spend gate', async (t) => {
  const cases: [string, Partial<InboundDeps>, string[]][] = [
    ['bare', {}, ['peer-verified', 'peer-expiry', 'header-screen', 'canonical-path', 'policy', 'admission']],
    ['revocations', { revocations }, ['peer-verified', 'peer-expiry', 'revocation', 'header-screen', 'canonical-path', 'policy', 'admission']],
    ['gate', { attestation: gate }, ['peer-verified', 'peer-expiry', 'header-screen', 'canonical-path', 'policy', 'attestation', 'admission']],
    ['spend', { spend }, ['peer-verified', 'peer-expiry', 'header-screen', 'canonical-path', 'policy', 'admission', 'budget']],
    [
      'everything (as the sidecar builds it)',
      { revocations, attestation: gate, spend },
      ['peer-verified', 'peer-expiry', 'revocation', 'header-screen', 'canonical-path', 'policy', 'attestation', 'admission', 'budget'],
    ],
  ];
  for (const [name, extra, names] of cases) {
    const chain = inboundChain({ ...base, ...extra }, new PeerAdmission(256, DEFAULT_PEER_ADMISSION), ends());
    t.strictSame(chain.names, names, name);
  }
});

t.test('the built chain answers in order: the first refusal wins', async (t) => {
  const seen = ends();
  const chain = inboundChain({ ...base, revocations }, new PeerAdmission(256, DEFAULT_PEER_ADMISSION), seen);
  chain.run(context({ url: '/a/../b' }));
  t.equal(seen.refused[0]?.reason, 'peer_unverified', 'the unverified peer, not the path');
  chain.run(context({ conn: connection(), url: '/a/../b', raw: ['host', 'app', 'x-http-method-override', 'PUT'] }));
  t.equal(seen.refused[1]?.reason, 'override_header_refused', 'the header screen before the path');
  chain.run(context({ conn: connection(), url: '/a/../b' }));
  t.equal(seen.refused[2]?.reason, 'path_not_canonical', 'the path before the policy');
  chain.run(context({ conn: connection(), url: '/b' }));
  t.equal(seen.refused[3]?.reason, 'no_policy');
  t.equal(seen.routed, 0);
  t.equal(seen.failed.length, 0);
});
