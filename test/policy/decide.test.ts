import t from 'tap';
import { compilePolicy } from '../../src/policy/compile.js';
import {
  actionNotPermittedDenial,
  decide,
  denialBody,
  noActionMappedDenial,
  unknownAgentDenial,
} from '../../src/policy/decide.js';
import type { Decision, Denial } from '../../src/policy/types.js';

const policy = compilePolicy(
  `agents:
  - name: fuzzer
    spiffe_ids: [spiffe://mesh.local/fuzzer, spiffe://mesh.local/fuzzer-2]
    allowed_actions: [fuzzer.run, 'quote"d']
  - name: approver
    spiffe_id: spiffe://mesh.local/approver
    allowed_actions: [approve_payment]
    attestation_requirements: { tee_type: sim }
`,
  'policy.yaml',
);

const req = (action: string | undefined, method = 'POST', path = '/x') => ({ method, path, action });
const peer = (id: string) => ({ spiffeId: id });

function denied(d: Decision): Denial {
  if (d.allow) throw new Error('expected a denial');
  return d;
}

t.test('allowed: known agent, mapped and permitted action, no obligations', async (t) => {
  for (const id of ['spiffe://mesh.local/fuzzer', 'spiffe://mesh.local/fuzzer-2']) {
    const d = decide(policy, req('fuzzer.run'), peer(id));
    t.match(d, { allow: true, reason: 'allowed', obligations: undefined });
    t.equal(d.agent, policy.agents[0]);
  }
  t.equal(decide(policy, req('fuzzer.run'), peer('spiffe://mesh.local/fuzzer')), decide(policy, req('quote"d'), peer('spiffe://mesh.local/fuzzer')), 'one allow object per agent');
  t.ok(Object.isFrozen(decide(policy, req('fuzzer.run'), peer('spiffe://mesh.local/fuzzer'))));
});

t.test('unknown agent', async (t) => {
  for (const id of ['spiffe://mesh.local/other', 'spiffe://mesh.local/fuzzer/', 'spiffe://MESH.local/fuzzer', '']) {
    const d = denied(decide(policy, req('fuzzer.run'), peer(id)));
    t.strictSame({ ...d }, { allow: false, status: 403, error: 'Unknown agent', reason: 'unknown_agent', body: '{"error":"Unknown agent"}', close: false, decision: 'deny' });
    t.equal(denialBody(d), '{"error":"Unknown agent"}');
  }
  // Checked before the action: an unknown caller learns nothing about the mapping.
  t.equal(denied(decide(policy, req(undefined), peer('spiffe://x/y'))).reason, 'unknown_agent');
});

t.test('no action mapped', async (t) => {
  const d = denied(decide(policy, req(undefined, 'GET', '/x'), peer('spiffe://mesh.local/fuzzer')));
  t.match(d, { status: 403, reason: 'no_action_mapped', error: 'No action mapped for GET /x' });
  t.equal(d.agent, policy.agents[0]);
  t.equal(denialBody(d), '{"error":"No action mapped for GET /x"}');
  const long = denied(decide(policy, req(undefined, 'GET', `/${'a'.repeat(1000)}`), peer('spiffe://mesh.local/fuzzer')));
  t.equal(long.error, `No action mapped for GET /${'a'.repeat(255)}...`);
});

t.test('action not permitted', async (t) => {
  const d = denied(decide(policy, req('fuzzer.write_harness'), peer('spiffe://mesh.local/fuzzer')));
  t.match(d, { status: 403, reason: 'action_not_permitted' });
  t.equal(denialBody(d), `{"error":"Action 'fuzzer.write_harness' not permitted"}`);
  // An action from another agent's list is still refused.
  t.equal(denied(decide(policy, req('approve_payment'), peer('spiffe://mesh.local/fuzzer'))).reason, 'action_not_permitted');
  const quoted = denied(decide(policy, req('a"b\\c\n'), peer('spiffe://mesh.local/fuzzer')));
  t.equal(denialBody(quoted), '{"error":"Action \'a\\"b\\\\c\\n\' not permitted"}');
  t.strictSame(JSON.parse(denialBody(quoted)), { error: `Action 'a"b\\c\n' not permitted` });
  t.match(decide(policy, req('quote"d'), peer('spiffe://mesh.local/fuzzer')), { allow: true });
});

t.test('attestation requirements are an obligation of the allow, after the action checks', async (t) => {
  const d = decide(policy, req('approve_payment'), peer('spiffe://mesh.local/approver'));
  if (!d.allow) throw new Error('expected an allow');
  t.equal(d.agent, policy.agents[1]);
  t.strictSame(d.obligations, { attestation: { teeType: 'sim' } });
  t.equal(d.obligations?.attestation, policy.agents[1]!.attestation, 'the requirements as compiled');
  t.equal(d, decide(policy, req('approve_payment'), peer('spiffe://mesh.local/approver')), 'precomputed per agent');
  t.equal(denied(decide(policy, req('fuzzer.run'), peer('spiffe://mesh.local/approver'))).reason, 'action_not_permitted');
  t.equal(denied(decide(policy, req(undefined), peer('spiffe://mesh.local/approver'))).reason, 'no_action_mapped');
});

t.test('no policy loaded', async (t) => {
  const d = denied(decide(undefined, req('fuzzer.run'), peer('spiffe://mesh.local/fuzzer')));
  t.match(d, { status: 503, reason: 'no_policy' });
  t.equal(denialBody(d), '{"error":"No policy loaded"}');
});

t.test('exported constructors build the same bodies as decide()', async (t) => {
  t.equal(denialBody(unknownAgentDenial()), '{"error":"Unknown agent"}');
  t.equal(denialBody(noActionMappedDenial('GET', '/x')), '{"error":"No action mapped for GET /x"}');
  t.equal(denialBody(actionNotPermittedDenial('fuzzer.write_harness')), `{"error":"Action 'fuzzer.write_harness' not permitted"}`);
  t.ok(Object.isFrozen(unknownAgentDenial()));
});

t.test('decide is deterministic and does not touch the policy', async (t) => {
  const before = JSON.stringify([...policy.agentsBySpiffeId.keys()]);
  const a = decide(policy, req('fuzzer.write_harness'), peer('spiffe://mesh.local/fuzzer'));
  const b = decide(policy, req('fuzzer.write_harness'), peer('spiffe://mesh.local/fuzzer'));
  t.strictSame(a, b);
  t.equal(JSON.stringify([...policy.agentsBySpiffeId.keys()]), before);
  t.equal(policy.agents[0]!.allowedActions.size, 2);
});

t.test('a budget is an obligation of the allow', async (t) => {
  const budgeted = compilePolicy(
    `agents:
  - name: buyer
    spiffe_id: spiffe://mesh.local/buyer
    allowed_actions: [buy]
    budget: { limit_usd: 10, period: daily }
  - name: attested-buyer
    spiffe_id: spiffe://mesh.local/attested-buyer
    allowed_actions: [buy]
    attestation_requirements: { tee_type: sim }
    budget: { limit_usd: 5, period: total }
`,
    'policy.yaml',
  );
  const d = decide(budgeted, req('buy'), peer('spiffe://mesh.local/buyer'));
  t.match(d, { allow: true, obligations: { budget: { limitUsd: 10, period: 'daily' } } });
  t.notOk(d.allow && d.obligations?.attestation);
  const both = decide(budgeted, req('buy'), peer('spiffe://mesh.local/attested-buyer'));
  t.match(both, { allow: true, obligations: { attestation: { teeType: 'sim' }, budget: { limitUsd: 5, period: 'total' } } });
  t.equal(denied(decide(budgeted, req('sell'), peer('spiffe://mesh.local/buyer'))).reason, 'action_not_permitted', 'a denial carries no obligations');
});
