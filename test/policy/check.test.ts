import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { policyVersion } from '../../src/policy/compile.js';
import { checkPolicyCommand } from '../../src/policy/check.js';

const dir = mkdtempSync(path.join(tmpdir(), 'check-policy-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('a valid policy: exit 0 and a summary', async (t) => {
  const file = path.join(dir, 'ok.yaml');
  const text = `admins: [spiffe://td/ops]
agents:
  - { name: a, spiffe_ids: [spiffe://td/a1, spiffe://td/a2], allowed_actions: [x, y] }
  - { name: b, spiffe_id: spiffe://td/b, allowed_actions: [y, z], attestation_requirements: { tee_type: sim } }
`;
  writeFileSync(file, text);
  const r = checkPolicyCommand(file);
  t.equal(r.exitCode, 0);
  t.equal(
    r.output,
    `OK ${file}: 2 agents (3 SPIFFE IDs, 1 requiring attestation), 3 distinct actions, 1 admin, version ${policyVersion(text)}\n` +
      '  a: x, y\n' +
      '  b: y, z\n',
  );
});

t.test('an invalid policy: exit 1 and one file:line:column line per problem', async (t) => {
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, 'agent_policy:\n  name: a\n  spiffe_id: nope\n  allowed: [x]\n');
  const r = checkPolicyCommand(file);
  t.equal(r.exitCode, 1);
  t.equal(
    r.output,
    `${file}:3:14: agent_policy.spiffe_id: invalid SPIFFE ID: scheme is missing or invalid: "nope"\n` +
      `${file}:4:3: agent_policy.allowed: unknown key 'allowed' (did you mean 'allowed_actions'?)\n`,
  );
});

t.test('a missing file: exit 1', async (t) => {
  const r = checkPolicyCommand(path.join(dir, 'missing.yaml'));
  t.equal(r.exitCode, 1);
  t.match(r.output, /missing\.yaml: cannot read policy file: ENOENT/);
});
