import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError } from '../../src/errors.js';
import { compilePolicy, loadPolicyFile, PolicyError } from '../../src/policy/compile.js';
import { policyProblems } from '../helpers/policy.js';

/** The example from the task description, byte for byte. */
const DOCUMENTED = `agent_policy:
  name: transaction_approver_high_value
  spiffe_id: spiffe://bank.example/ns/payments/sa/approver
  allowed_actions: [approve_payment, query_ledger]
  attestation_requirements:
    runtime_environment: az-confidential-compute
    tee_type: sev-snp
    expected_mrenclave: "a1b2c3d4e5f6..."
    minimum_security_version: 2
    require_runtime_debug_disabled: true
  access_control:
    - { principal_attestation_claim: "oid:1.2.3.4.5", resource: ledger_db, permission: read }
`;
const MEASUREMENT = 'A1B2C3D4E5F6'.repeat(8); // 96 hex digits = 48 bytes, an SNP launch measurement

const problems = (text: string) => policyProblems(text);

/** [line, column, key, message-pattern] of the only problem in `text`. */
function only(t: Test, text: string, line: number, column: number, key: string | undefined, msg: RegExp): void {
  const ps = problems(text);
  t.equal(ps.length, 1, `one problem: ${JSON.stringify(ps)}`);
  t.match(ps[0], { file: 'p.yaml', line, column, key, message: msg });
}

const AGENT = (extra = '') => `agent_policy:\n  name: a\n  spiffe_id: spiffe://td/a\n${extra}`;

t.test('the documented example with its placeholder measurement is refused at the exact spot', async (t) => {
  only(
    t,
    DOCUMENTED,
    8,
    25,
    'agent_policy.attestation_requirements.expected_mrenclave',
    /must be a hex measurement, got 'a1b2c3d4e5f6\.\.\.' \(a placeholder\? paste the full value\)/,
  );
});

t.test('the documented example with a real measurement compiles exactly', async (t) => {
  const text = DOCUMENTED.replace('a1b2c3d4e5f6...', MEASUREMENT);
  const now = new Date('2026-01-02T03:04:05Z');
  const p = compilePolicy(text, 'p.yaml', now);
  t.equal(p.version, createHash('sha256').update(text).digest('hex').slice(0, 16));
  t.equal(p.file, 'p.yaml');
  t.equal(p.loadedAt, now);
  t.equal(p.agents.length, 1);
  const a = p.agents[0]!;
  t.strictSame(
    {
      name: a.name,
      spiffeIds: [...a.spiffeIds],
      allowedActions: [...a.allowedActions],
      attestation: a.attestation,
      accessControl: a.accessControl,
      position: a.position,
      budget: a.budget,
    },
    {
      name: 'transaction_approver_high_value',
      spiffeIds: ['spiffe://bank.example/ns/payments/sa/approver'],
      allowedActions: ['approve_payment', 'query_ledger'],
      attestation: {
        teeType: 'sev-snp',
        runtimeEnvironment: 'az-confidential-compute',
        expectedMeasurements: [MEASUREMENT.toLowerCase()],
        minimumSecurityVersion: 2,
        requireRuntimeDebugDisabled: true,
      },
      accessControl: [{ principalAttestationClaim: 'oid:1.2.3.4.5', resource: 'ledger_db', permission: 'read', claim: { oid: '1.2.3.4.5' } }],
      position: { file: 'p.yaml', line: 2, column: 3 },
      budget: undefined,
    },
  );
  t.equal(p.agentsBySpiffeId.get('spiffe://bank.example/ns/payments/sa/approver'), a);
  t.equal(p.agentsBySpiffeId.size, 1);
  t.equal(p.admins.size, 0);
  t.ok(Object.isFrozen(a) && Object.isFrozen(p.agents) && Object.isFrozen(a.attestation));
});

t.test('several documents, each with agent_policy, plus admins and an empty trailing document', async (t) => {
  const p = compilePolicy(
    `version: 1
admins: [spiffe://td/ops]
---
agent_policy:
  name: one
  spiffe_id: spiffe://td/one
  allowed_actions: [x]
---
agent_policy:
  name: two
  spiffe_id: spiffe://td/two
  allowed_actions: []
---
`,
    'p.yaml',
  );
  t.strictSame(p.agents.map((a) => a.name), ['one', 'two']);
  t.strictSame([...p.admins], ['spiffe://td/ops']);
  t.equal(p.agentsBySpiffeId.get('spiffe://td/two')!.allowedActions.size, 0);
  t.match(p.agents[1]!.position, { line: 10, column: 3 });
});

t.test('agents: list with spiffe_ids, budget and the wider attestation keys', async (t) => {
  const p = compilePolicy(
    `agents:
  - name: fuzzer
    spiffe_ids: [spiffe://td/fuzz/a, spiffe://td/fuzz/b]
    allowed_actions: [fuzzer.run]
    budget: { limit_usd: 12.5, period: daily }
  - name: vtpm
    spiffe_id: spiffe://td/vtpm
    attestation_requirements:
      tee_type: az-snp-vtpm
      expected_measurement: [${MEASUREMENT}]
      minimum_tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }
      allowed_chip_ids: ["${'ab'.repeat(64)}"]
      pcrs: { 0: "${'00'.repeat(32)}", 7: "${'Ff'.repeat(20)}" }
      freshness: per_request
      max_evidence_age: 5m
      reference_values: azure-prod
`,
    'p.yaml',
  );
  const [fuzzer, vtpm] = p.agents;
  t.strictSame(fuzzer!.spiffeIds, ['spiffe://td/fuzz/a', 'spiffe://td/fuzz/b']);
  t.equal(p.agentsBySpiffeId.get('spiffe://td/fuzz/b'), fuzzer);
  t.strictSame(fuzzer!.budget, { limitUsd: 12.5, period: 'daily' });
  t.equal(fuzzer!.attestation, undefined);
  t.strictSame(vtpm!.attestation, {
    teeType: 'az-snp-vtpm',
    expectedMeasurements: [MEASUREMENT.toLowerCase()],
    minimumTcb: Object.assign(Object.create(null), { bootloader: 3, tee: 0, snp: 8, microcode: 115 }), // user keys: null prototype
    allowedChipIds: ['ab'.repeat(64)],
    pcrs: Object.assign(Object.create(null), { '0': '00'.repeat(32), '7': 'ff'.repeat(20) }),
    freshness: 'per_request',
    maxEvidenceAgeSeconds: 300,
    referenceValues: 'azure-prod',
  });
  t.strictSame(compilePolicy(AGENT('  budget: { limit_usd: 0 }\n'), 'p.yaml').agents[0]!.budget, {
    limitUsd: 0,
    period: 'total',
  });
});

t.test('hex read as a YAML number keeps its digits', async (t) => {
  const p = compilePolicy(
    AGENT('  attestation_requirements:\n    tee_type: sim\n    expected_measurement: 0012\n'),
    'p.yaml',
  );
  t.strictSame(p.agents[0]!.attestation!.expectedMeasurements, ['0012']);
});

t.test('each validation error names file, line, column and key', async (t) => {
  const cases: [string, string, number, number, string | undefined, RegExp][] = [
    ['misspelled agent key', AGENT('  alowed_actions: [x]\n'), 4, 3, 'agent_policy.alowed_actions', /unknown key 'alowed_actions' \(did you mean 'allowed_actions'\?\)/],
    ['missing name', 'agent_policy:\n  spiffe_id: spiffe://td/a\n', 2, 3, 'agent_policy', /missing required key 'name'/],
    ['missing spiffe_id', 'agent_policy:\n  name: a\n', 2, 3, 'agent_policy', /missing required key 'spiffe_id' \(or 'spiffe_ids'\)/],
    ['invalid SPIFFE ID', 'agent_policy:\n  name: a\n  spiffe_id: spiffe://TD/a\n', 3, 14, 'agent_policy.spiffe_id', /invalid SPIFFE ID: trust domain characters/],
    ['trust-domain-only ID', 'agent_policy:\n  name: a\n  spiffe_id: spiffe://td\n', 3, 14, 'agent_policy.spiffe_id', /names only a trust domain/],
    ['both id keys', AGENT('  spiffe_ids: [spiffe://td/b]\n'), 4, 3, 'agent_policy.spiffe_ids', /either 'spiffe_id' or 'spiffe_ids', not both/],
    ['name not a string', 'agent_policy:\n  name: [a]\n  spiffe_id: spiffe://td/a\n', 2, 9, 'agent_policy.name', /must be a single value, got a list/],
    ['empty value', 'agent_policy:\n  name:\n  spiffe_id: spiffe://td/a\n', 2, 3, 'agent_policy.name', /needs a value/],
    ['wildcard action', AGENT('  allowed_actions: [ok, "*"]\n'), 4, 25, 'agent_policy.allowed_actions[1]', /wildcards are not supported/],
    ['duplicate action', AGENT('  allowed_actions: [x, x]\n'), 4, 24, 'agent_policy.allowed_actions[1]', /duplicate action 'x'/],
    ['tee_type typo', AGENT('  attestation_requirements:\n    tee_type: sev\n'), 5, 15, 'agent_policy.attestation_requirements.tee_type', /must be one of sev-snp, .*; got 'sev' \(did you mean 'sev-snp'\?\)/],
    ['sgx measurement length', AGENT(`  attestation_requirements:\n    tee_type: sgx\n    expected_mrenclave: ${'ab'.repeat(48)}\n`), 6, 25, 'agent_policy.attestation_requirements.expected_mrenclave', /a sgx measurement has 64 hex digits \(32 bytes\), got 96/],
    ['odd hex', AGENT('  attestation_requirements:\n    expected_mrenclave: abc\n'), 5, 25, 'agent_policy.attestation_requirements.expected_mrenclave', /even number of digits/],
    ['alias and name both', AGENT(`  attestation_requirements:\n    expected_mrenclave: ab\n    expected_measurement: ab\n`), 6, 5, 'agent_policy.attestation_requirements.expected_measurement', /alias of 'expected_mrenclave'; use one/],
    ['negative svn', AGENT('  attestation_requirements:\n    minimum_security_version: -1\n'), 5, 31, 'agent_policy.attestation_requirements.minimum_security_version', /must be at least 0, got -1/],
    ['svn not int', AGENT('  attestation_requirements:\n    minimum_security_version: "2"\n'), 5, 31, 'agent_policy.attestation_requirements.minimum_security_version', /must be an integer, got '2'/],
    ['debug flag not bool', AGENT('  attestation_requirements:\n    require_runtime_debug_disabled: yes\n'), 5, 37, 'agent_policy.attestation_requirements.require_runtime_debug_disabled', /must be true or false, got 'yes'/],
    ['empty requirements', AGENT('  attestation_requirements: {}\n'), 4, 29, 'agent_policy.attestation_requirements', /is empty/],
    ['snp tcb component typo', AGENT('  attestation_requirements:\n    tee_type: sev-snp\n    minimum_tcb: { microcod: 115 }\n'), 6, 20, 'agent_policy.attestation_requirements.minimum_tcb.microcod', /did you mean 'microcode'/],
    ['snp tcb out of range', AGENT('  attestation_requirements:\n    tee_type: sev-snp\n    minimum_tcb: { snp: 256 }\n'), 6, 25, 'agent_policy.attestation_requirements.minimum_tcb.snp', /at most 255/],
    ['pcr index', AGENT(`  attestation_requirements:\n    pcrs: { 24: "${'00'.repeat(32)}" }\n`), 5, 13, 'agent_policy.attestation_requirements.pcrs.24', /PCR index must be 0-23/],
    ['pcr digest size', AGENT('  attestation_requirements:\n    pcrs: { 7: "abcd" }\n'), 5, 16, 'agent_policy.attestation_requirements.pcrs.7', /40, 64, 96 or 128 hex digits/],
    ['freshness', AGENT('  attestation_requirements:\n    freshness: always\n'), 5, 16, 'agent_policy.attestation_requirements.freshness', /must be one of session, per_request/],
    ['evidence age', AGENT('  attestation_requirements:\n    max_evidence_age: 5 minutes\n'), 5, 23, 'agent_policy.attestation_requirements.max_evidence_age', /invalid duration '5 minutes'/],
    ['claim without oid', AGENT('  access_control:\n    - { principal_attestation_claim: "1.2.3", resource: r, permission: p }\n'), 5, 38, 'agent_policy.access_control[0].principal_attestation_claim', /must be 'oid:' followed by a dotted OID/],
    ['claim with bad arc', AGENT('  access_control:\n    - { principal_attestation_claim: "oid:1.40.1", resource: r, permission: p }\n'), 5, 45, 'agent_policy.access_control[0].principal_attestation_claim', /under OID arc 1 the second arc is below 40, got 40/],
    ['access entry missing permission', AGENT('  access_control:\n    - { principal_attestation_claim: "oid:1.2.3=x", resource: r }\n'), 5, 7, 'agent_policy.access_control[0]', /missing required key 'permission'/],
    ['budget period', AGENT('  budget: { limit_usd: 5, period: weekly }\n'), 4, 35, 'agent_policy.budget.period', /must be one of total, daily, monthly/],
    ['unknown top-level key', `${AGENT()}agent: {}\n`, 4, 1, 'agent', /unknown key 'agent' \(did you mean 'agents'\?\)/],
    ['unsupported version', `version: 2\n${AGENT()}`, 1, 10, 'version', /unsupported policy version 2/],
    ['bad admin', `admins: [ops]\n${AGENT()}`, 1, 10, 'admins[0]', /invalid SPIFFE ID/],
    ['unknown alias', AGENT('  allowed_actions: *nope\n'), 4, 20, 'agent_policy.allowed_actions', /unknown alias '\*nope'/],
    ['YAML syntax error', 'agent_policy:\n  name: [a\n', 3, 1, undefined, /Flow sequence|flow collection|must be sufficiently indented/i],
    ['YAML duplicate key', `${AGENT()}  name: b\n`, 4, 3, 'agent_policy.name', /Map keys must be unique: 'name' is already set on line 2/],
    ['document not a mapping', '- a\n', 1, 1, undefined, /must be a mapping, got a list/],
  ];
  for (const [name, text, line, column, key, msg] of cases) {
    t.test(name, async (t) => only(t, text, line, column, key, msg));
  }
});

t.test('IDs and names are unique across agents and documents', async (t) => {
  const ps = problems(`agents:
  - { name: a, spiffe_id: spiffe://td/x }
  - { name: b, spiffe_ids: [spiffe://td/y, spiffe://td/y] }
---
agent_policy: { name: a, spiffe_id: spiffe://td/x }
`);
  t.strictSame(
    ps.map((p) => [p.line, p.column, p.key, p.message]),
    [
      [3, 44, 'agents[1].spiffe_ids[1]', "SPIFFE ID 'spiffe://td/y' is already bound to this agent (line 3); an ID may belong to one agent only"],
      [5, 23, 'agent_policy.name', "duplicate agent name 'a' (first declared at line 2)"],
      [5, 37, 'agent_policy.spiffe_id', "SPIFFE ID 'spiffe://td/x' is already bound to agent 'a' (line 2); an ID may belong to one agent only"],
    ],
  );
});

t.test('all problems of a file are reported, in file order, in one PolicyError', async (t) => {
  const text = `agents:
  - name: a
    spiffe_id: nope
    allowed_actions: [x]
  - name: b
    spiffe_id: spiffe://td/b
    attestation_requirements: { tee_type: sgx, freshnes: session }
extra: 1
`;
  let err: unknown;
  try {
    compilePolicy(text, 'dir/p.yaml');
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof PolicyError);
  t.ok(err instanceof ConfigError);
  const e = err as PolicyError;
  t.equal(e.reason, 'policy_invalid');
  t.strictSame(
    e.problems.map((p) => `${p.line}:${p.column}`),
    ['3:16', '7:48', '8:1'],
  );
  t.match(e, { file: 'dir/p.yaml', line: 3, column: 16, key: 'agents[0].spiffe_id' });
  t.equal(
    e.message.split('\n')[0],
    '3 problems:',
  );
  t.match(e.message, /dir\/p\.yaml:7:48: agents\[1\]\.attestation_requirements\.freshnes: unknown key 'freshnes' \(did you mean 'freshness'\?\)/);
});

t.test('a file without agents is refused (it would deny everything)', async (t) => {
  for (const text of ['', '# nothing\n', '---\n---\n', 'admins: [spiffe://td/ops]\n']) {
    const ps = problems(text);
    t.equal(ps.length, 1);
    t.match(ps[0], { line: 0, message: /defines no agents/ });
  }
  t.match(problems('{}\n')[0], { line: 1, column: 1, message: /expected 'agent_policy:' or 'agents:'/ });
});

t.test('loadPolicyFile reads a file; unreadable files are PolicyErrors', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, AGENT('  allowed_actions: [x]\n'));
  const p = loadPolicyFile(file);
  t.equal(p.file, file);
  t.ok(p.agentsBySpiffeId.get('spiffe://td/a')!.allowedActions.has('x'));
  try {
    loadPolicyFile(path.join(dir, 'missing.yaml'));
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof PolicyError);
    t.match((err as PolicyError).problems[0], { line: 0, message: /cannot read policy file: ENOENT/ });
  }
});
