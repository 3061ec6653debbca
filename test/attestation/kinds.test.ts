/**
 * The evidence-kind registry: every kind's parts agree with the envelope, names are unique, the
 * CLI and the config reader know every kind, and each kind's sniff recognises its own sample and
 * no other kind's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { VerifierConfig } from '../../src/attestation/config.js';
import {
  allKinds,
  KIND_NAMES,
  kindNamed,
  KINDS,
  PARTS,
  TRUST_SECTIONS,
  type AttesterConfig,
  type EvidenceType,
  type VerifierTrust,
} from '../../src/attestation/kinds.js';
import { decodeEvidence, encodeEvidence } from '../../src/attestation/envelope.js';
import { generateSimKey, signSimReport } from '../../src/attestation/sim/report.js';
import { verifyEvidence } from '../../src/attestation/verifier.js';
import { inspectEvidenceCommand, readEvidenceBytes, sniffEvidenceType, verifyEvidenceCommand } from '../../src/cli/evidence.js';
import { configProblems } from '../helpers/config.js';
import { reasonOf } from '../helpers/attestation.js';
import { conformance, repoRoot } from '../helpers/paths.js';

// Compile-time: the unions derived from the list are the ones the rest of the code was written against.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const derived: [
  Same<EvidenceType, 'sev-snp' | 'tdx' | 'sgx' | 'tpm' | 'az-snp-vtpm' | 'sim'>,
  Same<AttesterConfig['type'], 'sev-snp' | 'tdx' | 'tpm' | 'sim'>,
  Same<keyof VerifierTrust, 'simKeys' | 'snpAnchors' | 'kds' | 'tpm'>,
  Same<keyof VerifierConfig, 'simKeys' | 'snpAnchors' | 'kds' | 'tpmAkNames' | 'tpmAkCas' | 'referenceValues' | 'cacheSize'>,
] = [true, true, true, true];
void derived;

t.test('names are unique and the lookups agree with the list', async (t) => {
  t.equal(new Set(KIND_NAMES).size, KINDS.length, 'unique');
  for (const k of allKinds()) {
    t.equal(kindNamed(k.name), k, `${k.name} by name`);
    t.equal(PARTS.get(k.name), k.parts, `${k.name} parts in the envelope table`);
  }
  t.equal(kindNamed('__proto__'), undefined, 'peer text never reaches a prototype');
  t.equal(kindNamed('constructor'), undefined);
});

t.test("every kind's parts are consistent with the envelope", async (t) => {
  for (const k of allKinds()) {
    const labels = Object.keys(k.parts);
    t.ok(labels.some((l) => k.parts[l]!.required), `${k.name} has a required part`);
    for (const [label, spec] of Object.entries(k.parts)) {
      t.match(label, /^[a-z][a-z0-9_]*$/, `${k.name}.${label} is a plain label`);
      t.notOk(['type', '__cmwc_t'].includes(label), `${k.name}.${label} does not collide with the envelope's own members`);
      t.match(spec.mediaType, /^[a-z]+\/[a-z0-9.+-]+$/, `${k.name}.${label} media type`);
      t.ok(Number.isInteger(spec.maxBytes) && spec.maxBytes > 0, `${k.name}.${label} size bound`);
    }
    // Every part at a size the table allows survives the round trip; a missing required part does not.
    const parts = Object.fromEntries(labels.map((l) => [l, Buffer.alloc(Math.min(k.parts[l]!.maxBytes, 512), 7)]));
    const ev = decodeEvidence(encodeEvidence({ type: k.name as EvidenceType, parts }));
    t.equal(ev.type, k.name);
    t.same(Object.keys(ev.parts).sort(), labels.sort(), `${k.name}: all parts decoded`);
    const required = labels.find((l) => k.parts[l]!.required)!;
    const { [required]: _dropped, ...rest } = parts;
    t.throws(() => encodeEvidence({ type: k.name as EvidenceType, parts: rest }), RangeError, `${k.name} without '${required}' is not encoded`);
  }
});

t.test('kinds without a verifier are refused as today (evidence_unsupported)', async (t) => {
  for (const k of allKinds()) {
    const ev = { type: k.name as EvidenceType, parts: Object.fromEntries(Object.keys(k.parts).map((l) => [l, Buffer.alloc(8)])) };
    const reason = reasonOf(() => verifyEvidence(ev, {}, { spki: Buffer.alloc(91) }, new Date()));
    if (k.verify) t.not(reason, 'evidence_unsupported', `${k.name} has a verifier`);
    else t.equal(reason, 'evidence_unsupported', `${k.name} is refused`);
  }
});


t.test('the config reader knows every kind', async (t) => {
  for (const k of allKinds()) {
    const problems = configProblems(`attestation: { attester: { type: ${k.name} } }\n`);
    if (k.attester) t.notMatch(problems, /unknown attester type/, `${k.name} is an attester type`);
    else t.match(problems, new RegExp(`unknown attester type '${k.name}' \\(one of `), `${k.name} cannot attest`);
    for (const key of k.attester?.keys ?? []) {
      t.notMatch(configProblems(`attestation: { attester: { type: ${k.name}, ${key}: x } }\n`), /unknown key|does not apply/, `${k.name} attester key ${key}`);
    }
  }
  for (const key of TRUST_SECTIONS.flatMap((s) => s.keys)) t.notMatch(configProblems(`attestation: { verifier: { ${key}: ~ } }\n`), /unknown key/, `verifier key ${key}`);
});

t.test('the CLI knows every kind', async (t) => {
  const offline = allKinds().filter((k) => k.offline).map((k) => k.name);
  t.same(offline, ['sev-snp', 'tpm'], 'the offline verifiers, in the order the usage names them');
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'kinds-test-')), 'blob.bin');
  writeFileSync(file, Buffer.alloc(64, 0xee));
  t.teardown(() => rmSync(path.dirname(file), { recursive: true, force: true }));
  for (const k of allKinds()) {
    const unsupported = `--type ${k.name} is not supported offline (${offline.join(', ')})`;
    const out = verifyEvidenceCommand([file, '--type', k.name]);
    if (k.offline) t.notMatch(out.stderr, unsupported, `${k.name} verifies offline`);
    else t.match(out.stderr, unsupported, `${k.name} is listed as not offline`);
    const inspected = inspectEvidenceCommand([file, '--type', k.name]);
    if (!k.describe) t.match(inspected.stderr, /cannot tell what .* is/, `${k.name} has nothing to describe`);
  }
});

/** One raw sample per kind that has a sniff: conformance data where we have it, else a synthetic one. */
function samples(): { found: Map<string, Buffer>; missing: Map<string, string> } {
  const out = new Map<string, Buffer>();
  const missing = new Map<string, string>();
  const key = generateSimKey();
  out.set('sim', signSimReport({ measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 5n, chipId: Buffer.alloc(64, 2), reportData: Buffer.alloc(64), issuedAtMs: Date.now() }, key.privateKey));
  const snp = conformance('sev-snp');
  if ('dir' in snp) out.set('sev-snp', readEvidenceBytes(path.join(snp.dir, 'virtee-sev/report_milan.hex')));
  else missing.set('sev-snp', snp.skip);
  const tpm = conformance('tpm');
  if ('dir' in tpm) {
    out.set('tpm', readFileSync(path.join(tpm.dir, 'go-attestation-gcp-windows/derived/quote_tpms_attest.bin')));
    out.set('az-snp-vtpm', readFileSync(path.join(tpm.dir, 'trustee-azure-snp-vtpm-milan/hcl-report.bin')));
  } else {
    missing.set('tpm', tpm.skip).set('az-snp-vtpm', tpm.skip);
  }
  return { found: out, missing };
}

t.test("each kind's sniff recognises its own sample and no other's", async (t) => {
  const { found, missing } = samples();
  for (const k of allKinds()) {
    if (!k.sniff) continue;
    const own = found.get(k.name);
    const skip = missing.get(k.name);
    if (skip !== undefined) {
      t.skip(`${k.name} sniff: ${skip}`, async () => {});
      continue;
    }
    if (!own) {
      t.fail(`no ${k.name} sample: add one to samples() in this test`);
      continue;
    }
    t.equal(sniffEvidenceType(own), k.name, `${k.name} sample is sniffed as ${k.name}`);
    for (const [other, bytes] of found) {
      if (other !== k.name) t.notOk(k.sniff(bytes), `${k.name} does not claim the ${other} sample`);
    }
  }
  t.equal(sniffEvidenceType(Buffer.from(encodeEvidence({ type: 'sim', parts: { report: found.get('sim')! } }))), 'envelope');
  t.equal(sniffEvidenceType(Buffer.from([0, 1, 2, 3])), undefined);
});

t.test('every module of the registry loads first on its own (no import cycle leaves a kind uninitialised)', async (t) => {
  const entries = [...KIND_NAMES.map((n) => `attestation/${n}/kind.js`), 'attestation/kinds.js', 'attestation/envelope.js', 'attestation/attester.js', 'cli/evidence.js', 'config/attestation.js'];
  for (const entry of entries) {
    const url = new URL(`file://${path.join(repoRoot, 'dist/src', entry)}`).href;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(url)}); if (Object.keys(m).length === 0) process.exit(3);`], { encoding: 'utf8' });
    t.equal(r.status, 0, `${entry} ${r.stderr.split('\n').find((l) => /Error/.test(l)) ?? ''}`);
  }
});
