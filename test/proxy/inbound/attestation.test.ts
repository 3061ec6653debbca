/** The attestation filter over a real gate: challenges, failures, a verified session. */
import t from 'tap';
import { prepareEvidence } from '../../../src/attestation/attester.js';
import { SimAttester } from '../../../src/attestation/sim/attester.js';
import { generateSimKey } from '../../../src/attestation/sim/report.js';
import { compilePolicy } from '../../../src/policy/compile.js';
import { AttestationGate } from '../../../src/proxy/attestation-gate.js';
import { attestationFilter } from '../../../src/proxy/inbound/filters/attestation.js';
import { canonicalPath } from '../../../src/proxy/inbound/filters/canonical-path.js';
import { policyFilter } from '../../../src/proxy/inbound/filters/policy.js';
import type { Connection } from '../../../src/proxy/inbound/context.js';
import { NOW, connection, context, peer } from './fakes.js';

const GOOD = 'a1'.repeat(48);
const simKey = generateSimKey();
const POLICY = compilePolicy(
  `agents:
  - name: approver
    spiffe_id: spiffe://mesh.local/approver
    allowed_actions: [approve, pay]
    attestation_requirements:
      tee_type: sim
      expected_measurement: "${GOOD}"
      freshness: { per_request: [pay] }
  - name: orchestrator
    spiffe_id: spiffe://mesh.local/orchestrator
    allowed_actions: [approve]
`,
  'policy.yaml',
);
const ACTIONS = [
  { method: 'POST', path: '/approve', action: 'approve' },
  { method: 'POST', path: '/pay', action: 'pay' },
];

const gate = new AttestationGate({ simKeys: [simKey.publicKey] }, () => NOW);
const filter = attestationFilter(gate);
const policy = policyFilter({ policy: () => POLICY, actions: ACTIONS, canAttest: true, canCharge: true });

function check(conn: Connection, url: string, raw: string[] = []) {
  const ctx = context({ conn, method: 'POST', url, raw: ['host', 'app', ...raw] });
  t.equal(canonicalPath.onRequest(ctx), undefined);
  t.equal(policy.onRequest(ctx), undefined);
  return filter.onRequest(ctx);
}

const approver = () => connection(peer('spiffe://mesh.local/approver'));
const evidence = prepareEvidence(await new SimAttester({ key: simKey.privateKey, measurement: GOOD, guestSvn: 3 }).produce(peer().spki));
const rogue = prepareEvidence(await new SimAttester({ key: generateSimKey().privateKey, measurement: GOOD, guestSvn: 3 }).produce(peer().spki));

t.test('attestation: table', async (t) => {
  const cases: [string, () => Connection, string, string[], { status: number; reason: string; challenge?: RegExp; error?: RegExp } | undefined][] = [
    ['no requirements: the gate is not asked', () => connection(), '/approve', [], undefined],
    ['no evidence', approver, '/approve', [], { status: 401, reason: 'attestation_required', challenge: /^evidence$/ }],
    ['unknown reference', approver, '/approve', ['attest-evidence-ref', 'nope'], { status: 401, reason: 'attestation_required', challenge: /^evidence$/ }],
    ['fresh evidence needed', approver, '/pay', ['attest-evidence', evidence.header], { status: 401, reason: 'attestation_fresh_required', challenge: /^nonce=[A-Za-z0-9_-]+$/ }],
    ['malformed evidence', approver, '/approve', ['attest-evidence', 'junk'], { status: 403, reason: 'evidence_malformed', error: /^Attestation failed: / }],
    ['untrusted signer', approver, '/approve', ['attest-evidence', rogue.header], { status: 403, reason: 'signature_invalid', error: /^Attestation failed: / }],
    ['good evidence', approver, '/approve', ['attest-evidence', evidence.header], undefined],
  ];
  for (const [name, conn, url, raw, refused] of cases) {
    const out = check(conn(), url, raw);
    if (!refused) {
      t.equal(out, undefined, name);
      continue;
    }
    t.match(out, { status: refused.status, reason: refused.reason, ...(refused.error ? { error: refused.error } : {}) }, name);
    const challenge = out && !(out instanceof Promise) ? out.headers?.['attest-challenge'] : undefined;
    if (refused.challenge) t.match(challenge, refused.challenge, `${name}: challenge`);
    else t.equal(challenge, undefined, `${name}: no challenge`);
  }
});

t.test('attestation: a verified connection is served from its session by reference', async (t) => {
  const conn = approver();
  t.equal(check(conn, '/approve', ['attest-evidence', evidence.header]), undefined);
  t.equal(conn.attestation?.lastRef, evidence.id, 'the session remembers the evidence');
  const hits = gate.cache.stats.hits;
  t.equal(check(conn, '/approve', ['attest-evidence-ref', evidence.id]), undefined);
  t.equal(gate.cache.stats.hits, hits + 1, 'a cache hit, no verification');
});
