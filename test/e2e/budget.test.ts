/**
 * Budgets end to end: per-action costs charged by the inbound sidecar, "Budget exceeded" once
 * spent >= limit, bounded overshoot under concurrency, spend surviving a restart, and one
 * budget shared through a real redis-server by two replicas (failing closed when it is down).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DEFAULT_ACTIONS, TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { RedisServer, redisSkipReason } from '../budget/redis-server.js';
import type { ActionMappingConfig } from '../../src/policy/actions.js';

const ACTIONS: ActionMappingConfig[] = [
  { method: 'POST', path: '/tasks', action: 'task.dispatch', costUsd: 0.25 },
  { method: 'POST', path: '/fuzzer/harness', action: 'fuzzer.write_harness', costUsd: 0.1 },
  ...DEFAULT_ACTIONS.filter((a) => a.path !== '/tasks' && a.path !== '/fuzzer/harness'),
];

const POLICY = `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [task.dispatch, agent.list]
    budget: { limit_usd: 1, period: daily }
  - name: harness-writer
    spiffe_id: ${idOf('harness-writer')}
    allowed_actions: [fuzzer.write_harness]
    budget: { limit_usd: 1, period: total }
  - name: intruder
    spiffe_id: ${idOf('intruder')}
    allowed_actions: [agent.list]
`;

const EXCEEDED = { error: 'Budget exceeded' };

t.test('per-action costs: refused once spent >= limit, persisted across a restart', async (t) => {
  const mesh = await TestMesh.start({ actions: ACTIONS, policy: POLICY });
  t.teardown(() => mesh.close());
  const proxy = mesh.proxyOf('orchestrator');
  for (let i = 0; i < 4; i++) {
    t.equal((await viaProxy(proxy, 'POST', 'http://control-plane/tasks', { body: '{}' })).status, 200, `task ${i + 1} within budget`);
  }
  const refused = await viaProxy(proxy, 'POST', 'http://control-plane/tasks', { body: '{}' });
  t.equal(refused.status, 402);
  t.same(JSON.parse(refused.body), EXCEEDED);
  // An unpriced action of an exhausted agent is refused too: spent >= limit refuses everything budgeted.
  const list = await viaProxy(proxy, 'GET', 'http://control-plane/agents');
  t.equal(list.status, 402);
  t.equal((await viaProxy(mesh.proxyOf('intruder'), 'GET', 'http://control-plane/agents')).status, 200, 'an agent without a budget is unaffected');

  const status = (await (await fetch(`${mesh.adminOf(mesh.server)}/status`)).json()) as { budgets: { agent: string; spent_usd: number; limit_usd: number; period: string }[] };
  const row = status.budgets.find((b) => b.agent === 'orchestrator')!;
  t.match(row, { spent_usd: 1, limit_usd: 1, period: 'daily' });
  const metrics = await (await fetch(`${mesh.adminOf(mesh.server)}/metrics`)).text();
  t.match(metrics, /attest_sidecar_budget_refusals_total\{agent="orchestrator",reason="budget_exceeded"[^}]*\} 2/);
  t.match(metrics, /attest_sidecar_budget_spend_usd_total\{agent="orchestrator",source="action"[^}]*\} 1/);
  const audit = mesh.serverAudit.records.filter((r) => r.type === 'budget');
  t.ok(audit.some((r) => r.reason === 'budget_exceeded' && r.agent === 'orchestrator' && r.spent_usd === 1 && r.limit_usd === 1), 'refusals are audited');

  await mesh.restartServer();
  const after = await viaProxy(proxy, 'POST', 'http://control-plane/tasks', { body: '{}' });
  t.equal(after.status, 402, 'the spend survived the restart');
});

t.test('concurrent requests overshoot by at most one request', async (t) => {
  const mesh = await TestMesh.start({ actions: ACTIONS, policy: POLICY, agents: ['harness-writer'] });
  t.teardown(() => mesh.close());
  const proxy = mesh.proxyOf('harness-writer');
  const results = await Promise.all(Array.from({ length: 40 }, () => viaProxy(proxy, 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' })));
  const admitted = results.filter((r) => r.status === 200).length;
  const refused = results.filter((r) => r.status === 402).length;
  t.equal(admitted + refused, 40, 'every request was admitted or refused as over budget');
  t.ok(admitted >= 10 && admitted <= 11, `admitted ${admitted} x $0.10 against $1: at most one over`);
  const appSaw = mesh.app.seen.filter((s) => s.url === '/fuzzer/harness').length;
  t.equal(appSaw, admitted, 'the app saw exactly the admitted requests');
  const spent = mesh.server.ledger.snapshot([{ name: 'harness-writer', budget: { limitUsd: 1, period: 'total' } }])[0]!.spent_usd;
  t.ok(spent <= 1.1 + 1e-9, `spent ${spent}`);
});

t.test('a shared budget in Redis across two replicas; fail closed when Redis is down', { skip: redisSkipReason() }, async (t) => {
  const redis = await RedisServer.start(t);
  // The production default (500 ms) is a per-command deadline: on a loaded machine 12 concurrent
  // charges, or the first connection, can miss it and answer 503 instead of 200/402. Losing Redis
  // below is a closed connection, which fails at once whatever the deadline.
  const budget = { store: 'redis' as const, url: redis.url, keyPrefix: `test-${process.pid}:`, timeoutMs: 20_000 };
  const mesh = await TestMesh.start({ actions: ACTIONS, policy: POLICY, agents: ['orchestrator', 'intruder'], budgetStore: budget });
  t.teardown(() => mesh.close());
  const replica = await mesh.startReplica('replica');
  // The same agent reaching the replica through a second outbound sidecar.
  const second = mesh.agentConfig('orchestrator', idOf('control-plane'));
  second.outbound!.routes[0] = { ...second.outbound!.routes[0]!, upstream: `https://127.0.0.1:${replica.inbound!.address()!.port}` };
  const viaReplica = await mesh.startSidecar('orchestrator', { ...second, stateDir: path.join(mesh.dir, 'state', 'orch-replica') });
  const proxies = [mesh.proxyOf('orchestrator'), `http://127.0.0.1:${viaReplica.outbound!.address()!.port}`];

  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => viaProxy(proxies[i % 2]!, 'POST', 'http://control-plane/tasks', { body: '{}' })));
  const admitted = results.filter((r) => r.status === 200).length;
  t.equal(admitted, 4, 'exactly $1 / $0.25 admitted across both replicas');
  t.equal(results.filter((r) => r.status === 402).length, 8);

  await redis.stop();
  const down = await viaProxy(proxies[0]!, 'POST', 'http://control-plane/tasks', { body: '{}' });
  t.equal(down.status, 503, 'budgeted agents fail closed while the store is unreachable');
  t.same(JSON.parse(down.body), { error: 'Budget ledger unavailable' });
  t.equal((await viaProxy(mesh.proxyOf('intruder'), 'GET', 'http://control-plane/agents')).status, 200, 'agents without a budget keep working');
  await redis.restart();
});

t.test('Redis with a password from a secret file: charges go through with AUTH; a missing file stops the start', { skip: redisSkipReason() }, async (t) => {
  const password = `pw-${process.pid}-redis-secret`;
  const redis = await RedisServer.start(t, { password });
  const dir = mkdtempSync(path.join(tmpdir(), 'budget-pw-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'password');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  const budget = { store: 'redis' as const, url: redis.url, keyPrefix: `pw-${process.pid}:`, timeoutMs: 20_000, passwordFile: file };
  const mesh = await TestMesh.start({ actions: ACTIONS, policy: POLICY, agents: ['orchestrator'], budgetStore: budget });
  t.teardown(() => mesh.close());
  const ok = await viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/tasks', { body: '{}' });
  t.equal(ok.status, 200, 'the charge went through Redis with AUTH (the trailing newline of the file is not part of the password)');

  await t.rejects(
    mesh.startReplica('replica-missing-pw', { budget: { ...budget, passwordFile: path.join(dir, 'absent') } }),
    { reason: 'budget_store_config', message: /budget\.redis\.password_file .*absent: ENOENT/ },
    'a missing password file stops the start, naming the key and the path',
  );
  writeFileSync(path.join(dir, 'two-lines'), 'a\nb\n');
  await t.rejects(
    mesh.startReplica('replica-two-lines', { budget: { ...budget, passwordFile: path.join(dir, 'two-lines') } }),
    { reason: 'budget_store_config', message: /one line/ },
  );
});
