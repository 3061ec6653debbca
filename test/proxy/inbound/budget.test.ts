/** The budget filter over a real ledger: charged, exhausted, unavailable, revoked meanwhile. */
import t from 'tap';
import client from 'prom-client';
import { BudgetLedger } from '../../../src/budget/ledger.js';
import { FileBudgetStore } from '../../../src/budget/file-store.js';
import { OperationsMetrics } from '../../../src/admin/operations-metrics.js';
import { createLogger } from '../../../src/log.js';
import { MemoryAuditSink } from '../../../src/audit/record.js';
import { compilePolicy } from '../../../src/policy/compile.js';
import { budgetFilter } from '../../../src/proxy/inbound/filters/budget.js';
import { canonicalPath } from '../../../src/proxy/inbound/filters/canonical-path.js';
import { policyFilter } from '../../../src/proxy/inbound/filters/policy.js';
import { SpendGate } from '../../../src/proxy/spend.js';
import { RevocationState } from '../../../src/revocation/state.js';
import { tempDir } from '../../budget/helpers.js';
import { connection, context, peer, revoked } from './fakes.js';

const BUYER = 'spiffe://mesh.local/buyer';
const POLICY = compilePolicy(
  `agents:
  - name: buyer
    spiffe_id: ${BUYER}
    allowed_actions: [buy, look]
    budget: { limit_usd: 1, period: total }
  - name: free
    spiffe_id: spiffe://mesh.local/free
    allowed_actions: [buy]
`,
  'policy.yaml',
);
const ACTIONS = [
  { method: 'POST', path: '/buy', action: 'buy', costUsd: 0.6 },
  { method: 'GET', path: '/look', action: 'look' },
];

const store = await FileBudgetStore.open(tempDir(t));
t.teardown(() => store.close());
const audit = new MemoryAuditSink();
const operationsMetrics = new OperationsMetrics(new client.Registry(), { revocations: () => ({ local: 0, shared: 0, all: false }), budgets: () => [] });
const spend = new SpendGate(new BudgetLedger(store), operationsMetrics, audit, createLogger({ level: 'silent' }));
const policy = policyFilter({ policy: () => POLICY, actions: ACTIONS, canAttest: true, canCharge: true });

function charge(id: string, method: string, url: string, state = RevocationState.empty(), destroyed = false) {
  const ctx = context({ conn: connection(peer(id)), method, url });
  canonicalPath.onRequest(ctx);
  t.equal(policy.onRequest(ctx), undefined);
  if (destroyed) (ctx.socket as { destroyed: boolean }).destroyed = true;
  return budgetFilter(spend, () => state).onRequest(ctx);
}

t.test('budget: table, in order (the ledger keeps its total)', async (t) => {
  const cases: [string, () => ReturnType<typeof charge>, { status: number; reason: string; error: string; close?: boolean } | undefined][] = [
    ['no budget: nothing charged, no promise', () => charge('spiffe://mesh.local/free', 'POST', '/buy'), undefined],
    ['charged 0.6 of 1', () => charge(BUYER, 'POST', '/buy'), undefined],
    ['revoked during the charge (/look is unpriced)', () => charge(BUYER, 'GET', '/look', revoked(BUYER)), { status: 403, reason: 'agent_revoked', error: 'Agent revoked', close: true }],
    ['connection gone during the charge', () => charge(BUYER, 'GET', '/look', RevocationState.empty(), true), { status: 403, reason: 'agent_revoked', error: 'Agent revoked', close: true }],
    ['charged 0.6 more: overshoots once', () => charge(BUYER, 'POST', '/buy'), undefined],
    ['exhausted', () => charge(BUYER, 'POST', '/buy'), { status: 402, reason: 'budget_exceeded', error: 'Budget exceeded' }],
  ];
  for (const [name, run, refused] of cases) {
    const pending = run();
    if (name.startsWith('no budget')) t.notOk(pending instanceof Promise, `${name}: synchronous`);
    const out = await pending;
    if (refused) t.match(out, refused, name);
    else t.equal(out, undefined, name);
  }
  t.ok(audit.records.some((r) => r.type === 'budget' && r.reason === 'budget_exceeded'), 'the spend gate audits its refusal');
});

t.test('budget: a closed ledger refuses with 503', async (t) => {
  const dir = tempDir(t);
  const closed = await FileBudgetStore.open(dir);
  await closed.close();
  const gate = new SpendGate(new BudgetLedger(closed), operationsMetrics, audit, createLogger({ level: 'silent' }));
  const ctx = context({ conn: connection(peer(BUYER)), method: 'POST', url: '/buy' });
  canonicalPath.onRequest(ctx);
  policy.onRequest(ctx);
  t.match(await budgetFilter(gate, undefined).onRequest(ctx), { status: 503, error: 'Budget ledger unavailable', reason: /^budget_/ });
});
