/**
 * `access_control` (claims naming extensions of the peer's SVID leaf) and per-action
 * freshness: compilation with exact positions, and the decision order in decide().
 */
import t, { type Test } from 'tap';
import { compilePolicy } from '../../src/policy/compile.js';
import { parseClaim, holdsClaim } from '../../src/policy/claims.js';
import { decide, denialBody, needsFreshEvidence, permissionNotGrantedDenial } from '../../src/policy/decide.js';
import type { Decision, Denial, PeerExtension } from '../../src/policy/types.js';
import { svidExtensionClaims } from '../../src/spiffe/extensions.js';
import { customExtension, makeCa, makeIntermediate, makeLeaf } from '../helpers/certs.js';
import { policyProblems } from '../helpers/policy.js';

/** The documented policy example (with freshness), byte for byte. */
const DOCUMENTED = `agent_policy:
  name: transaction_approver_high_value
  spiffe_id: spiffe://bank.example/ns/payments/sa/approver
  allowed_actions: [approve_payment, query_ledger]
  attestation_requirements: { tee_type: sev-snp, freshness: per_request }
  access_control:
    - { principal_attestation_claim: "oid:1.2.3.4.5", resource: ledger_db, permission: read }
`;

const problems = (text: string) => policyProblems(text);

function only(t: Test, text: string, line: number, column: number, key: string, msg: RegExp): void {
  const ps = problems(text);
  t.equal(ps.length, 1, `one problem: ${JSON.stringify(ps)}`);
  t.match(ps[0], { file: 'p.yaml', line, column, key, message: msg });
}

function denied(d: Decision): Denial {
  if (d.allow) throw new Error('expected a denial');
  return d;
}

t.test('the documented example compiles; the claim is parsed once', async (t) => {
  const a = compilePolicy(DOCUMENTED, 'p.yaml').agents[0]!;
  t.strictSame(a.attestation, { teeType: 'sev-snp', freshness: 'per_request' });
  t.strictSame(a.accessControl, [
    { principalAttestationClaim: 'oid:1.2.3.4.5', resource: 'ledger_db', permission: 'read', claim: { oid: '1.2.3.4.5' } },
  ]);
  t.ok(Object.isFrozen(a.accessControl[0]) && Object.isFrozen(a.accessControl[0]!.claim));
});

t.test('claims: values, hex normalisation, and OID rules', async (t) => {
  t.strictSame(parseClaim('oid:2.999.1'), { ok: true, claim: { oid: '2.999.1' } });
  t.strictSame(parseClaim('oid:1.3.6.1.4.1.99999.1=payments team'), { ok: true, claim: { oid: '1.3.6.1.4.1.99999.1', value: 'payments team' } });
  t.strictSame(parseClaim('oid:1.2.3=0A0B'), { ok: true, claim: { oid: '1.2.3', value: '0A0B', valueHex: '0a0b' } });
  t.strictSame(parseClaim('oid:1.2.3=a=b'), { ok: true, claim: { oid: '1.2.3', value: 'a=b' } });
  const bad: [string, number, RegExp][] = [
    ['1.2.3', 0, /must be 'oid:'/],
    ['OID:1.2.3', 0, /must be 'oid:'/],
    ['oid:', 4, /missing OID/],
    ['oid:=x', 4, /missing OID/],
    ['oid:1', 4, /at least two arcs/],
    ['oid:3.1', 4, /first OID arc is 0, 1 or 2, got 3/],
    ['oid:0.40', 6, /second arc is below 40, got 40/],
    ['oid:1.2.03', 8, /leading zero/],
    ['oid:1..2', 6, /empty OID arc/],
    ['oid:1.2.', 8, /empty OID arc/],
    ['oid:1.2.x', 8, /'x' is not a number/],
    ['oid:1.2.-1', 8, /not a number/],
    ['oid:1.2.3=', 9, /empty value after '='/],
    ['oid:1.2.3=a\tb', 11, /control character/],
  ];
  for (const [text, index, message] of bad) {
    const r = parseClaim(text);
    t.match(r, { ok: false, index, message }, text);
  }
});

t.test('compile errors point at the offending character', async (t) => {
  const agent = (claim: string) =>
    `agent_policy:\n  name: a\n  spiffe_id: spiffe://td/a\n  allowed_actions: [x]\n  access_control:\n    - principal_attestation_claim: ${claim}\n      resource: r\n      permission: p\n`;
  const key = 'agent_policy.access_control[0].principal_attestation_claim';
  // Column 36 is where the value starts on line 6.
  only(t, agent('oid:1.2.03'), 6, 36 + 8, key, /OID arc '03' has a leading zero/);
  only(t, agent('"oid:1.2.03"'), 6, 36 + 1 + 8, key, /leading zero/);
  only(t, agent("'oid:7.1'"), 6, 36 + 1 + 4, key, /first OID arc is 0, 1 or 2/);
  only(t, agent('"oid:1.2.3="'), 6, 36 + 1 + 9, key, /empty value/);
  only(t, agent('ledger'), 6, 36, key, /must be 'oid:' followed by a dotted OID/);
  // An escape makes the source longer than the value: the scalar itself is reported.
  only(t, agent('"oid:1.2.\\x41"'), 6, 36, key, /OID arc 'A' is not a number/);
  only(t, agent('[oid:1.2.3]'), 6, 36, key, /must be a single value/);
  only(t, agent('oid:1.2.3').replace('resource: r', 'resource: [r]'), 7, 17, 'agent_policy.access_control[0].resource', /must be a single value/);
});

t.test('freshness: session, per_request, or the actions that need fresh evidence', async (t) => {
  const agent = (freshness: string, actions = '[approve_payment, query_ledger]') =>
    `agent_policy:\n  name: a\n  spiffe_id: spiffe://td/a\n  allowed_actions: ${actions}\n  attestation_requirements:\n    tee_type: sim\n    freshness: ${freshness}\n`;
  const reqs = (freshness: string) => compilePolicy(agent(freshness), 'p.yaml').agents[0]!.attestation;
  t.strictSame(reqs('session'), { teeType: 'sim', freshness: 'session' });
  t.strictSame(reqs('per_request'), { teeType: 'sim', freshness: 'per_request' });
  t.strictSame(reqs('{ per_request: [approve_payment] }'), { teeType: 'sim', perRequestActions: ['approve_payment'] });
  t.strictSame(reqs('\n      per_request:\n        - approve_payment\n        - query_ledger'), {
    teeType: 'sim',
    perRequestActions: ['approve_payment', 'query_ledger'],
  });

  const key = 'agent_policy.attestation_requirements.freshness';
  only(t, agent('always'), 7, 16, key, /must be one of session, per_request/);
  only(t, agent('[approve_payment]'), 7, 16, key, /must be 'session', 'per_request' or a mapping/);
  only(t, agent('{ per_request: [approve_payment, wire_money] }'), 7, 49, `${key}.per_request[1]`, /action 'wire_money' is not in this agent's allowed_actions/);
  only(t, agent('{ per_request: [query_ledger, query_ledger] }'), 7, 46, `${key}.per_request[1]`, /duplicate action 'query_ledger'/);
  only(t, agent('{ per_request: [] }'), 7, 31, `${key}.per_request`, /must list at least one action/);
  only(t, agent('{ per_requests: [query_ledger] }'), 7, 18, `${key}.per_requests`, /unknown key 'per_requests' \(did you mean 'per_request'\?\)/);
  only(t, agent('{}'), 7, 16, key, /must name the actions that need fresh evidence/);
  only(t, agent('{ per_request: query_ledger }'), 7, 31, `${key}.per_request`, /must be a list/);
  const noActions = problems(agent('{ per_request: [query_ledger] }', '[]'));
  t.match(noActions, [{ line: 7, column: 32, message: /'query_ledger' is not in this agent's allowed_actions/ }]);
});

t.test('needsFreshEvidence', async (t) => {
  t.equal(needsFreshEvidence({}, 'a'), false);
  t.equal(needsFreshEvidence({ freshness: 'session' }, 'a'), false);
  t.equal(needsFreshEvidence({ freshness: 'per_request' }, 'a'), true);
  t.equal(needsFreshEvidence({ perRequestActions: ['a'] }, 'a'), true);
  t.equal(needsFreshEvidence({ perRequestActions: ['a'] }, 'b'), false);
  t.equal(needsFreshEvidence({ freshness: 'per_request', perRequestActions: ['a'] }, 'b'), true);
});

const POLICY = compilePolicy(
  `agents:
  - name: ledger
    spiffe_id: spiffe://bank.example/ledger
    allowed_actions: [query_ledger, post_entry, close_books, list]
    access_control:
      - { principal_attestation_claim: "oid:1.2.3.4.5", resource: ledger_db, permission: read }
      - { principal_attestation_claim: "oid:1.3.6.1.4.1.99999.1=payments", resource: ledger_db, permission: write }
      - { principal_attestation_claim: "oid:1.3.6.1.4.1.99999.2=0201FF", resource: books, permission: close }
  - name: approver
    spiffe_id: spiffe://bank.example/approver
    allowed_actions: [query_ledger]
    attestation_requirements: { tee_type: sim }
    access_control:
      - { principal_attestation_claim: "oid:1.2.3.4.5", resource: ledger_db, permission: read }
`,
  'policy.yaml',
);
const LEDGER = 'spiffe://bank.example/ledger';
const APPROVER = 'spiffe://bank.example/approver';
const req = (action: string | undefined, resource?: string, permission?: string) => ({
  method: 'GET',
  path: '/ledger',
  action,
  ...(resource !== undefined ? { resource } : {}),
  ...(permission !== undefined ? { permission } : {}),
});
const exts = (entries: Record<string, PeerExtension>) => new Map(Object.entries(entries));
const utf8Ext = (text: string): PeerExtension => ({ text, hex: `0c${text.length.toString(16).padStart(2, '0')}${Buffer.from(text).toString('hex')}` });

t.test('decide: a held claim grants exactly its resource and permission', async (t) => {
  const holder = { spiffeId: LEDGER, extensions: exts({ '1.2.3.4.5': { hex: '0500' } }) };
  const ok = decide(POLICY, req('query_ledger', 'ledger_db', 'read'), holder);
  t.match(ok, { allow: true, reason: 'allowed' });
  t.equal(ok.agent, POLICY.agents[0]);

  const cases: [string, string, string][] = [
    ['query_ledger', 'ledger_db', 'write'], // another permission on the same resource
    ['query_ledger', 'other_db', 'read'], // the same permission on another resource
    ['query_ledger', 'Ledger_db', 'read'], // names are exact
  ];
  for (const [action, resource, permission] of cases) {
    const d = denied(decide(POLICY, req(action, resource, permission), holder));
    t.strictSame({ ...d, agent: undefined }, {
      allow: false,
      status: 403,
      error: `Permission '${permission}' on resource '${resource}' not granted`,
      reason: 'permission_not_granted',
      body: JSON.stringify({ error: `Permission '${permission}' on resource '${resource}' not granted` }),
      close: false,
      decision: 'deny',
      agent: undefined,
    });
    t.equal(d.agent, POLICY.agents[0]);
  }
  // A mapping that names no resource/permission needs no entry.
  t.match(decide(POLICY, req('list'), { spiffeId: LEDGER }), { allow: true });
});

t.test('decide: without the extension, or with no extensions at all, the permission is not granted', async (t) => {
  for (const extensions of [undefined, exts({}), exts({ '1.2.3.4.6': { hex: '0500' } }), exts({ '1.2.3.4': { hex: '0500' } })]) {
    const d = denied(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), { spiffeId: LEDGER, ...(extensions ? { extensions } : {}) }));
    t.equal(d.reason, 'permission_not_granted');
    t.equal(denialBody(d), `{"error":"Permission 'read' on resource 'ledger_db' not granted"}`);
    t.strictSame(JSON.parse(denialBody(d)), { error: "Permission 'read' on resource 'ledger_db' not granted" });
  }
});

t.test('decide: value match by decoded text and by hex; a wrong value is refused', async (t) => {
  const write = req('post_entry', 'ledger_db', 'write');
  const withExt = (e: PeerExtension) => ({ spiffeId: LEDGER, extensions: exts({ '1.3.6.1.4.1.99999.1': e }) });
  t.match(decide(POLICY, write, withExt(utf8Ext('payments'))), { allow: true }, 'text equal');
  t.equal(denied(decide(POLICY, write, withExt(utf8Ext('Payments')))).reason, 'permission_not_granted', 'text is case-sensitive');
  t.equal(denied(decide(POLICY, write, withExt(utf8Ext('payments-ops')))).reason, 'permission_not_granted', 'no prefix match');
  // A non-string value is compared as hex; the claim's value is not: 'payments' is not hex.
  t.equal(denied(decide(POLICY, write, withExt({ hex: Buffer.from('payments').toString('hex') }))).reason, 'permission_not_granted');

  const close = req('close_books', 'books', 'close');
  const closeExt = (e: PeerExtension) => ({ spiffeId: LEDGER, extensions: exts({ '1.3.6.1.4.1.99999.2': e }) });
  t.match(decide(POLICY, close, closeExt({ hex: '0201ff' })), { allow: true }, 'hex equal (claim written in upper case)');
  t.equal(denied(decide(POLICY, close, closeExt({ hex: '0201fe' }))).reason, 'permission_not_granted', 'other bytes');
  t.equal(denied(decide(POLICY, close, closeExt({ hex: '0201ff00' }))).reason, 'permission_not_granted', 'longer');
  // A string-valued extension compares its text, not its hex.
  t.equal(denied(decide(POLICY, close, closeExt({ text: 'x', hex: '0201ff' }))).reason, 'permission_not_granted');
  t.match(decide(POLICY, close, closeExt({ text: '0201FF', hex: '0c06303230314646' })), { allow: true }, 'its text is the claim value');
  t.equal(denied(decide(POLICY, close, closeExt({ text: '0201ff', hex: '0c06303230316666' }))).reason, 'permission_not_granted', 'text compare is exact');
});

t.test('decide: the order of the checks', async (t) => {
  const none = { spiffeId: APPROVER };
  const holder = { spiffeId: APPROVER, extensions: exts({ '1.2.3.4.5': { hex: '0500' } }) };
  t.equal(denied(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), { spiffeId: 'spiffe://bank.example/x' })).reason, 'unknown_agent');
  t.equal(denied(decide(POLICY, req(undefined, 'ledger_db', 'read'), none)).reason, 'no_action_mapped');
  t.equal(denied(decide(POLICY, req('post_entry', 'ledger_db', 'read'), holder)).reason, 'action_not_permitted');
  t.equal(denied(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), none)).reason, 'permission_not_granted', 'before attestation');
  t.match(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), holder), { allow: true, obligations: { attestation: { teeType: 'sim' } } }, 'then the allow, which owes attestation');
  // Another agent's grant does not carry over.
  t.equal(denied(decide(POLICY, req('query_ledger', 'books', 'close'), holder)).reason, 'permission_not_granted');
});

t.test('decide: a mapping naming only a resource or only a permission fails closed', async (t) => {
  const holder = { spiffeId: LEDGER, extensions: exts({ '1.2.3.4.5': { hex: '0500' } }) };
  const r = denied(decide(POLICY, req('query_ledger', 'ledger_db'), holder));
  t.match(r, { reason: 'permission_not_granted', error: "Access to resource 'ledger_db' not granted (the action mapping names no permission)" });
  const p = denied(decide(POLICY, req('query_ledger', undefined, 'read'), holder));
  t.match(p, { reason: 'permission_not_granted', error: "Permission 'read' not granted (the action mapping names no resource)" });
  t.equal(denialBody(permissionNotGrantedDenial('a"b', 'c')), '{"error":"Permission \'c\' on resource \'a\\"b\' not granted"}');
});

t.test('decide over extensions read from a real certificate', async (t) => {
  const root = await makeCa({ td: 'bank.example' });
  const mid = await makeIntermediate(root, { td: 'bank.example' });
  const leaf = await makeLeaf(mid, {
    uris: [LEDGER],
    extensions: [
      customExtension('1.2.3.4.5', false, new Uint8Array([0x05, 0x00])),
      customExtension('1.3.6.1.4.1.99999.1', false, new Uint8Array([0x0c, 0x08, ...Buffer.from('payments')])),
      customExtension('1.3.6.1.4.1.99999.2', false, new Uint8Array([0x02, 0x01, 0xff])),
    ],
  });
  const peer = { spiffeId: LEDGER, extensions: svidExtensionClaims(leaf.cert) };
  t.match(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), peer), { allow: true });
  t.match(decide(POLICY, req('post_entry', 'ledger_db', 'write'), peer), { allow: true });
  t.match(decide(POLICY, req('close_books', 'books', 'close'), peer), { allow: true });
  t.ok(holdsClaim({ oid: '2.5.29.17' }, peer.extensions), 'standard extensions are claims too (subjectAltName)');

  const plain = await makeLeaf(mid, { uris: [LEDGER] });
  const d = denied(decide(POLICY, req('query_ledger', 'ledger_db', 'read'), { spiffeId: LEDGER, extensions: svidExtensionClaims(plain.cert) }));
  t.equal(d.reason, 'permission_not_granted');
});
