/** The policy filter: decisions, obligations nothing can meet, and the per-connection route cache. */
import t from 'tap';
import { compilePolicy } from '../../../src/policy/compile.js';
import type { CompiledPolicy } from '../../../src/policy/types.js';
import { policyFilter, type PolicyFilterDeps } from '../../../src/proxy/inbound/filters/policy.js';
import type { ActionMappingConfig } from '../../../src/policy/actions.js';
import { canonicalPath } from '../../../src/proxy/inbound/filters/canonical-path.js';
import { connection, context, peer } from './fakes.js';

const POLICY = compilePolicy(
  `agents:
  - name: orchestrator
    spiffe_id: spiffe://mesh.local/orchestrator
    allowed_actions: [list_agents]
  - name: approver
    spiffe_id: spiffe://mesh.local/approver
    allowed_actions: [approve]
    attestation_requirements: { tee_type: sim }
  - name: buyer
    spiffe_id: spiffe://mesh.local/buyer
    allowed_actions: [buy]
    budget: { limit_usd: 1, period: total }
`,
  'policy.yaml',
);

const ACTIONS: ActionMappingConfig[] = [
  { method: 'GET', path: '/agents', action: 'list_agents' },
  { method: 'POST', path: '/approve', action: 'approve' },
  { method: 'POST', path: '/buy', action: 'buy', costUsd: 0.5 },
];

function run(deps: Partial<PolicyFilterDeps>, id: string, method: string, url: string, conn = connection(peer(id))) {
  const filter = policyFilter({ policy: () => POLICY, actions: ACTIONS, canAttest: true, canCharge: true, ...deps });
  const ctx = context({ conn, method, url });
  t.equal(canonicalPath.onRequest(ctx), undefined);
  return { out: filter.onRequest(ctx), ctx };
}

t.test('policy: table', async (t) => {
  const cases: [string, Partial<PolicyFilterDeps>, string, string, string, { status: number; reason: string; error: string } | undefined, object?][] = [
    ['allowed', {}, 'orchestrator', 'GET', '/agents', undefined, { attestation: undefined, budget: undefined }],
    ['no policy', { policy: () => undefined }, 'orchestrator', 'GET', '/agents', { status: 503, reason: 'no_policy', error: 'No policy loaded' }],
    ['unknown agent', {}, 'stranger', 'GET', '/agents', { status: 403, reason: 'unknown_agent', error: 'Unknown agent' }],
    ['no action mapped', {}, 'orchestrator', 'GET', '/nothing', { status: 403, reason: 'no_action_mapped', error: 'No action mapped for GET /nothing' }],
    ['action not permitted', {}, 'orchestrator', 'POST', '/approve', { status: 403, reason: 'action_not_permitted', error: "Action 'approve' not permitted" }],
    ['attestation owed, gate present', {}, 'approver', 'POST', '/approve', undefined, { attestation: { teeType: 'sim' }, budget: undefined }],
    ['attestation owed, no gate', { canAttest: false }, 'approver', 'POST', '/approve', { status: 403, reason: 'attestation_unavailable', error: 'Attestation required' }],
    ['budget owed, spend gate present', {}, 'buyer', 'POST', '/buy', undefined, { attestation: undefined, budget: { limitUsd: 1, period: 'total' } }],
    ['budget owed, no spend gate', { canCharge: false }, 'buyer', 'POST', '/buy', { status: 503, reason: 'budget_ledger_unavailable', error: 'Budget ledger unavailable' }],
  ];
  for (const [name, deps, agent, method, url, refused, owed] of cases) {
    const { out, ctx } = run(deps, `spiffe://mesh.local/${agent}`, method, url);
    if (refused) t.match(out, refused, name);
    else {
      t.equal(out, undefined, name);
      t.match(ctx.route, owed!, `${name}: obligations`);
      t.equal(ctx.policy, POLICY, `${name}: the policy it was decided under`);
    }
    if (refused?.reason !== 'no_policy' && refused?.reason !== 'no_action_mapped' && refused?.reason !== 'unknown_agent') {
      t.equal(ctx.action, ACTIONS.find((a) => a.path === url)?.action, `${name}: the action is recorded`);
    }
  }
});

t.test('policy: the route is cached per connection while method, target and policy stay the same', async (t) => {
  let current: CompiledPolicy | undefined = POLICY;
  const filter = policyFilter({ policy: () => current, actions: ACTIONS, canAttest: true, canCharge: true });
  const conn = connection();
  const ask = (method: string, url: string) => {
    const ctx = context({ conn, method, url });
    canonicalPath.onRequest(ctx);
    return { out: filter.onRequest(ctx), route: ctx.route };
  };
  const first = ask('GET', '/agents');
  t.equal(first.out, undefined);
  t.equal(ask('GET', '/agents').route, first.route, 'same target: the cached route');
  t.not(ask('POST', '/agents').route, first.route, 'another method: decided again');
  const denied = ask('POST', '/agents');
  t.match(denied.out, { reason: 'no_action_mapped' }, 'denials are cached too');
  t.not(ask('GET', '/agents?x=1').route, first.route, 'another target: decided again');
  current = compilePolicy('agents:\n  - name: orchestrator\n    spiffe_id: spiffe://mesh.local/orchestrator\n    allowed_actions: [other]\n', 'policy.yaml');
  t.match(ask('GET', '/agents?x=1').out, { reason: 'action_not_permitted' }, 'a new policy: decided again');
  current = undefined;
  t.match(ask('GET', '/agents?x=1').out, { reason: 'no_policy' }, 'no policy is never served from the cache');
});
