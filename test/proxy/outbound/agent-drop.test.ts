/**
 * What the outbound proxy never passes on from the agent, on every kind of route: our
 * attestation fields and the identity fields in any `_`/`-` spelling (an upstream that is not a
 * sidecar, e.g. go-spiffe or Envoy, may trust `x-spiffe-id` or XFCC). Over real sockets with a
 * go-spiffe upstream: test/spire/go-peers.slow.test.ts.
 */
import t from 'tap';
import { forwardRequestHeaders } from '../../../src/proxy/headers.js';
import { route } from './fakes.js';

const smuggled = [
  'X-Spiffe-Id', 'spiffe://td/admin',
  'x_spiffe_id', 'spiffe://td/admin',
  'X-Spiffe_Id', 'spiffe://td/admin',
  'X-Forwarded-Client-Cert', 'URI=spiffe://td/admin',
  'x_forwarded_client_cert', 'URI=spiffe://td/admin',
  'X-Forwarded_Client-Cert', 'URI=spiffe://td/admin',
  'Attest-Evidence', 'forged',
  'attest-evidence-ref', 'forged',
  'Attest-Nonce', 'forged',
  'X-Request-Id', 'agent-chosen',
  'X-Custom', 'kept',
  'X-Forwarded-For', '10.0.0.1',
];

for (const [kind, over] of [
  ['spiffe', {}],
  ['web', { tls: 'web' as const, upstream: 'https://api.example.com' }],
] as const) {
  t.test(`a ${kind} route drops the agent's identity and attestation fields`, async (t) => {
    const r = route(over);
    const out = forwardRequestHeaders(['Host', 'control-plane', ...smuggled], r.drop, ['x-request-id', 'rid-1']) as string[];
    const names = out.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const name of names) {
      t.notOk(/^x[-_]spiffe[-_]id$|^x[-_]forwarded[-_]client[-_]cert$|^attest-/.test(name), `${name} is not passed on`);
    }
    t.same(out.slice(0, 2), ['x-request-id', 'rid-1'], 'our request id, not the agent');
    t.equal(names.filter((n) => n === 'x-request-id').length, 1);
    t.ok(names.includes('x-custom'), 'ordinary fields pass');
    t.ok(names.includes('x-forwarded-for'), 'forwarding fields pass (the peer sidecar replaces them)');
  });
}
