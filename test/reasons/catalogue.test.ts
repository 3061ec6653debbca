import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { REASONS, isReasonCode, refusal, refuse, type FixedReasonCode, type ReasonCode, type ReasonKind } from '../../src/reasons.js';
import type { AttestationReason } from '../../src/attestation/types.js';
import { repoRoot } from '../helpers/paths.js';
import { reasonLiterals } from './literal-scan.js';

const CODES = Object.keys(REASONS) as ReasonCode[];
const SNAKE_CASE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;
/** Kinds whose codes answer an HTTP request, and those that never do. */
const ANSWERED: ReadonlySet<ReasonKind> = new Set<ReasonKind>(['request', 'attestation', 'admin']);
const UNANSWERED: ReadonlySet<ReasonKind> = new Set<ReasonKind>(['handshake', 'config', 'failure', 'audit', 'outcome']);

t.test('every code is snake_case and documented on one line', async (t) => {
  t.ok(CODES.length > 100, `the catalogue holds every code (${CODES.length})`);
  for (const code of CODES) {
    const spec = REASONS[code];
    t.match(code, SNAKE_CASE, `${code} is snake_case`);
    t.ok(spec.doc.length > 0 && !spec.doc.includes('\n'), `${code} has a one-line doc`);
    // The docs put messages in code spans.
    t.notOk(spec.message.includes('`') || spec.message.includes('\n'), `${code}'s message fits a code span`);
  }
});

t.test('every request, attestation and admin code has an HTTP status; the unanswered kinds have none', async (t) => {
  for (const code of CODES) {
    const spec: { kind: ReasonKind; status?: number } = REASONS[code];
    if (ANSWERED.has(spec.kind)) t.ok(Number.isInteger(spec.status) && spec.status! >= 400 && spec.status! <= 599, `${code}: ${spec.status}`);
    if (UNANSWERED.has(spec.kind)) t.equal(spec.status, undefined, `${code} answers no request`);
  }
  t.equal(REASONS.svid_expired.status, 403);
  t.equal(REASONS.peer_concurrency_exceeded.status, 429);
  t.equal(REASONS.budget_exceeded.status, 402);
});

/** The codes refusal() takes, found at run time (FixedReasonCode at compile time). */
const FIXED_CODES = CODES.filter((c) => !/<[^>]*>/.test(REASONS[c].message)) as FixedReasonCode[];

t.test('refusal(): one frozen object per code, its body the JSON of the message', async (t) => {
  t.ok(FIXED_CODES.includes('no_policy') && !FIXED_CODES.includes('unknown_route' as FixedReasonCode));
  // @ts-expect-error a message that names something is built with refuse()
  t.ok(REASONS[('unknown_route' satisfies FixedReasonCode) as ReasonCode]);
  for (const code of FIXED_CODES) {
    const spec: { status?: number; message: string; close?: boolean; decision?: 'deny' | 'error' } = REASONS[code];
    if (spec.status === undefined) continue;
    const r = refusal(code);
    t.equal(refusal(code), r, `${code}: the same object each call`);
    t.ok(Object.isFrozen(r), `${code}: frozen`);
    t.equal(r.reason, code);
    t.equal(r.status, spec.status);
    t.equal(r.error, spec.message);
    t.equal(r.body, JSON.stringify({ error: spec.message }));
    t.same(JSON.parse(r.body), { error: spec.message });
    t.equal(r.close, spec.close ?? false);
    t.equal(r.decision, spec.decision ?? 'deny');
  }
  t.equal(refusal('agent_revoked').close, true, 'a revoked peer is closed');
  t.equal(refusal('internal_error').decision, 'error', 'a bug is an error, not a policy denial');
});

t.test('refuse(): a message that names something, with headers', async (t) => {
  const r = refuse('unknown_route', 'Unknown route \'a "quoted" name\'', { 'x-test': '1' });
  t.ok(Object.isFrozen(r));
  t.equal(r.status, 404);
  t.equal(r.body, '{"error":"Unknown route \'a \\"quoted\\" name\'"}', 'escaped once, at build time');
  t.same(r.headers, { 'x-test': '1' });
  t.equal(refuse('unknown_route', 'x').headers, undefined, 'no headers unless given');
  t.not(refuse('unknown_route', 'x'), refuse('unknown_route', 'x'), 'a named refusal is built per call');
});

t.test('isReasonCode: own codes only', async (t) => {
  t.ok(isReasonCode('svid_expired'));
  t.notOk(isReasonCode('toString'), 'no prototype names');
  t.notOk(isReasonCode('not_a_code'));
});

t.test('AttestationReason is the attestation kind of the catalogue', async (t) => {
  const fromCatalogue = CODES.filter((c) => REASONS[c].kind === 'attestation').sort();
  const known: AttestationReason[] = ['evidence_malformed', 'measurement_mismatch', 'verification_error'];
  // @ts-expect-error a policy denial is not an attestation failure
  const notOne: AttestationReason = 'unknown_agent';
  t.ok(known.every((c) => fromCatalogue.includes(c)));
  t.notOk(fromCatalogue.includes(notOne));
  t.ok(fromCatalogue.length >= 19, 'every verifier failure is catalogued');
});

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

t.test('the scanner finds reason literals, and flags one that is not a code', async (t) => {
  const sample = [
    "throw new SidecarError('not_a_code', 'x');",
    "return refusal('headers_timeout');",
    "const r = { status: 1, reason: 'made_up_reason' };",
    "const reason = err instanceof SidecarError ? err.reason : 'svid_malformed';",
    "this.record(req, start, peer, 'allow', 'allowed', 200);",
    "throw new ConfigError('bad', { file }, 'policy_invalid');",
    "throw new ConfigError(`a, b`, { file, line: f(1, 2) }, 'wrong_config_code');",
    "throw new ConfigError('no reason given', { file });",
    "const LEVELS = ['warn', 'error', 'fatal', 'silent'];",
    "throw refuse('a message, not a code');",
  ].join('\n');
  const found = reasonLiterals(sample).map((f) => f.code).sort();
  t.same(found, ['allowed', 'headers_timeout', 'made_up_reason', 'not_a_code', 'policy_invalid', 'svid_malformed', 'wrong_config_code']);
  t.same(found.filter((c) => !isReasonCode(c)), ['made_up_reason', 'not_a_code', 'wrong_config_code']);
});

/**
 * The generic default codes of src/spiffe/authorize.ts. They are never reported: a check whose
 * refusals reach the audit log accepts only authorizers worded with catalogue codes (the compiler
 * enforces it, see test/spiffe/authorize.test.ts).
 */
const AUTHORIZER_DEFAULTS = new Set(['peer_id_not_authorized', 'peer_trust_domain_not_authorized', 'peer_revoked']);

t.test('every reason literal in src/ is a catalogue code', async (t) => {
  const root = path.join(repoRoot, 'src');
  const seen = new Set<string>();
  const unknown: string[] = [];
  for (const file of sourceFiles(root)) {
    for (const f of reasonLiterals(readFileSync(file, 'utf8'))) {
      seen.add(f.code);
      const exempt = path.basename(file) === 'authorize.ts' && AUTHORIZER_DEFAULTS.has(f.code);
      if (!isReasonCode(f.code) && !exempt) unknown.push(`${path.relative(repoRoot, file)}:${f.line}: '${f.code}'`);
    }
  }
  t.same(unknown, [], 'reason literals outside the catalogue');
  // The scan itself must keep finding the sources' literals (a broken pattern would pass vacuously).
  t.ok(seen.size > 80, `distinct reason literals found: ${seen.size}`);
  for (const code of ['admin_bad_request', 'svid_malformed', 'budget_exceeded', 'evidence_malformed', 'config_invalid']) t.ok(seen.has(code), `found ${code}`);
});
