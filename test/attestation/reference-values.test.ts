import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError } from '../../src/errors.js';
import { applyReferenceValues } from '../../src/attestation/reference-values.js';
import { ReferenceValuesError, parseReferenceValues, type ReferenceValues } from '../../src/attestation/reference-values-parse.js';
import { checkSigningKeys, parseSigningKeysPem } from '../../src/attestation/reference-values-signature.js';

const M1 = 'a1'.repeat(48);
const M2 = 'b2'.repeat(48);
const CHIP = 'c3'.repeat(64);
const AK = 'd4'.repeat(32);
const NOW = new Date('2026-01-01T00:00:00Z');

const rvText = (over: { name?: string; expires?: string; measurements?: string[]; extra?: string } = {}) =>
  [
    'reference_values:',
    `  name: ${over.name ?? 'prod'}`,
    `  expires: ${over.expires ?? '2027-06-30T00:00:00Z'}`,
    `  measurements: [${(over.measurements ?? [M1]).map((m) => `"${m}"`).join(', ')}]`,
    ...(over.extra ? [over.extra] : []),
    '',
  ].join('\n');

const FULL = rvText({
  measurements: [M1, M2],
  extra: [
    '  minimum_security_version: 2',
    '  minimum_tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }',
    `  allowed_chip_ids: ["${CHIP.toUpperCase()}"]`,
    `  pcrs: { 0: "${'00'.repeat(32)}", 7: "${'ab'.repeat(32)}" }`,
    `  tpm_ak_spki_sha256: ["${AK}"]`,
  ].join('\n'),
});

const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = () => generateKeyPairSync('ec', { namedCurve: 'P-384' });
/** The `.sig` file content: base64 of the signature over the exact text bytes. */
const sigFile = (text: string, key: KeyObject, hash: string, dsaEncoding: 'der' | 'ieee-p1363' = 'der') =>
  Buffer.from(sign(hash, Buffer.from(text), { key, dsaEncoding }).toString('base64') + '\n');

const parse = (text: string, opts: Partial<Parameters<typeof parseReferenceValues>[2]> = {}) =>
  parseReferenceValues(text, '/etc/rv/prod.yaml', { keys: [], requireSignature: false, now: NOW, name: 'prod', ...opts });

/** Runs `fn`, expecting a ReferenceValuesError; returns it. */
function refused(t: Test, fn: () => unknown, reason: string): ReferenceValuesError {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof ReferenceValuesError, 'a ReferenceValuesError');
    t.ok(err instanceof ConfigError, 'which is a ConfigError');
    t.equal((err as ReferenceValuesError).reason, reason);
    return err as ReferenceValuesError;
  }
  t.fail(`expected ${reason}`);
  throw new Error('unreachable');
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('parses every field; version is sha256-16 of the bytes', async (t) => {
  const rv = parse(FULL);
  t.match(rv, {
    name: 'prod',
    measurements: [M1, M2],
    minimumSecurityVersion: 2,
    minimumTcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
    allowedChipIds: [CHIP],
    pcrs: { '0': '00'.repeat(32), '7': 'ab'.repeat(32) },
    tpmAkSpkiSha256: [AK],
    file: '/etc/rv/prod.yaml',
    signed: false,
  });
  t.equal(rv.expiresAt.toISOString(), '2027-06-30T00:00:00.000Z');
  const sha = execFileSync('sha256sum', { input: FULL }).toString().slice(0, 16);
  t.equal(rv.version, sha, 'matches sha256sum of the exact bytes');
  t.equal(parse(Buffer.from(FULL) as unknown as string).version, sha, 'bytes and text give the same version');
  const minimal = parse(rvText());
  t.same(Object.keys(minimal).sort(), ['expiresAt', 'file', 'measurements', 'name', 'signed', 'version']);
});

t.test('problems carry file:line:column and key', async (t) => {
  let err = refused(t, () => parse(rvText({ extra: '  measurement: []' })), 'reference_values_invalid');
  t.match(err.problems[0], { file: '/etc/rv/prod.yaml', line: 5, column: 3, key: 'reference_values.measurement' });
  t.match(err.message, /prod\.yaml:5:3: reference_values\.measurement: unknown key 'measurement' \(did you mean 'measurements'\?\)/);

  err = refused(t, () => parse(rvText({ measurements: [M1, 'abcd'] })), 'reference_values_invalid');
  t.match(err.problems[0], { line: 4, key: 'reference_values.measurements[1]', message: /96 hex digits/ });

  err = refused(t, () => parse(rvText({ expires: '2027-06-30' })), 'reference_values_invalid');
  t.match(err.problems[0], { line: 3, column: 12, key: 'reference_values.expires', message: /RFC 3339/ });

  err = refused(t, () => parse(rvText({ name: 'staging' })), 'reference_values_invalid');
  t.match(err.problems[0], { line: 2, column: 9, message: /configured for environment 'prod'/ });

  err = refused(t, () => parse(rvText({ extra: `  pcrs: { 24: "${'00'.repeat(32)}", 1: "abc" }` })), 'reference_values_invalid');
  t.equal(err.problems.length, 2, 'every problem is reported, not just the first');
  t.match(err.problems, [{ message: /PCR index must be 0-23/ }, { message: /hex digest/ }]);

  err = refused(t, () => parse('reference_values:\n  name: prod\n'), 'reference_values_invalid');
  t.match(err.problems.map((p) => p.message), [/missing required key 'expires'/, /missing required key 'measurements'/]);
  refused(t, () => parse('reference_values: [\n'), 'reference_values_invalid');
  refused(t, () => parse(''), 'reference_values_invalid');
  refused(t, () => parse(`${rvText()}---\n${rvText()}`), 'reference_values_invalid');
  refused(t, () => parse(Buffer.from([0xff, 0xfe, 0x41]) as unknown as string), 'reference_values_invalid');
  refused(t, () => parse(rvText({ extra: `  allowed_chip_ids: []` })), 'reference_values_invalid');
  refused(t, () => parse(rvText({ measurements: [M1, M1] })), 'reference_values_invalid');
  err = refused(t, () => parse(rvText({ measurements: [] })), 'reference_values_invalid');
  t.match(err.message, /only TPM-only files with 'pcrs' may leave it empty/);
  t.same(parse(rvText({ measurements: [], extra: `  pcrs: { 7: "${'ab'.repeat(32)}" }` })).measurements, []);
});

t.test('expiry is judged at the given clock, fail closed', async (t) => {
  const text = rvText({ expires: '2026-01-01T00:00:00Z' });
  t.ok(parse(text, { now: new Date('2025-12-31T23:59:59.999Z') }));
  const err = refused(t, () => parse(text, { now: NOW }), 'reference_values_expired');
  t.match(err.problems[0], { line: 3, column: 12, key: 'reference_values.expires' });
  t.match(err.message, /expired at 2026-01-01T00:00:00\.000Z/);
  t.ok(parse(rvText({ expires: '2026-01-01T02:00:00+03:00' }), { now: new Date('2025-12-31T22:59:00Z') }), 'zone offsets count');
  refused(t, () => parse(rvText({ expires: '2026-01-01T02:00:00+03:00' }), { now: new Date('2025-12-31T23:00:00Z') }), 'reference_values_expired');
});

t.test('signatures: P-256/SHA-256 and P-384/SHA-384, DER and raw r||s', async (t) => {
  const a = p256();
  const b = p384();
  const keys = [a.publicKey, b.publicKey];
  for (const [label, sig] of [
    ['P-256 DER', sigFile(FULL, a.privateKey, 'sha256')],
    ['P-256 raw', sigFile(FULL, a.privateKey, 'sha256', 'ieee-p1363')],
    ['P-384 DER', sigFile(FULL, b.privateKey, 'sha384')],
    ['P-384 raw', sigFile(FULL, b.privateKey, 'sha384', 'ieee-p1363')],
  ] as const) {
    t.equal(parse(FULL, { signature: sig, keys, requireSignature: true }).signed, true, label);
  }
  // The hash is fixed by the curve: a P-256 key never accepts SHA-384 (nor P-384 SHA-256).
  refused(t, () => parse(FULL, { signature: sigFile(FULL, a.privateKey, 'sha384'), keys }), 'reference_values_bad_signature');
  refused(t, () => parse(FULL, { signature: sigFile(FULL, b.privateKey, 'sha256'), keys }), 'reference_values_bad_signature');
});

t.test('signing required: missing is unsigned; present-but-bad is refused even when optional', async (t) => {
  const a = p256();
  const other = p256();
  const err = refused(t, () => parse(FULL, { keys: [a.publicKey], requireSignature: true }), 'reference_values_unsigned');
  t.match(err.message, /prod\.yaml\.sig is missing/);
  t.equal(parse(FULL, { keys: [a.publicKey] }).signed, false, 'unsigned is fine when not required');

  const good = sigFile(FULL, a.privateKey, 'sha256');
  for (const requireSignature of [true, false]) {
    const bad = refused(
      t,
      () => parse(FULL, { signature: sigFile(FULL, other.privateKey, 'sha256'), keys: [a.publicKey], requireSignature }),
      'reference_values_bad_signature',
    );
    t.match(bad.problems[0], { file: '/etc/rv/prod.yaml.sig', message: /does not verify/ });
    const tampered = FULL.replace('minimum_security_version: 2', 'minimum_security_version: 1');
    refused(t, () => parse(tampered, { signature: good, keys: [a.publicKey], requireSignature }), 'reference_values_bad_signature');
    refused(t, () => parse(FULL, { signature: Buffer.from('not base64!'), keys: [a.publicKey], requireSignature }), 'reference_values_bad_signature');
    refused(t, () => parse(FULL, { signature: Buffer.from(''), keys: [a.publicKey], requireSignature }), 'reference_values_bad_signature');
  }
  const noKeys = refused(t, () => parse(FULL, { signature: good, keys: [] }), 'reference_values_bad_signature');
  t.match(noKeys.message, /no reference-value signing keys are configured/);
  // The signature is checked before the YAML is parsed: an unsigned broken file is refused as unsigned.
  refused(t, () => parse('reference_values: [\n', { keys: [a.publicKey], requireSignature: true }), 'reference_values_unsigned');
  // A signed file that is itself invalid is still invalid.
  const broken = 'reference_values:\n  name: prod\n';
  refused(t, () => parse(broken, { signature: sigFile(broken, a.privateKey, 'sha256'), keys: [a.publicKey], requireSignature: true }), 'reference_values_invalid');
});

t.test('cross-check with the openssl CLI in both directions', async (t) => {
  const dir = tempDir(t);
  const { privateKey, publicKey } = p256();
  const keyPem = path.join(dir, 'key.pem');
  const pubPem = path.join(dir, 'pub.pem');
  const file = path.join(dir, 'prod.yaml');
  writeFileSync(keyPem, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pubPem, publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(file, FULL);

  // openssl signs (DER), `openssl base64` wraps at 64 columns: our verifier accepts it.
  const der = execFileSync('openssl', ['dgst', '-sha256', '-sign', keyPem, file]);
  const b64 = execFileSync('openssl', ['base64'], { input: der });
  t.equal(parse(readFileSync(file, 'utf8'), { signature: b64, keys: parseSigningKeysPem(readFileSync(pubPem, 'utf8'), pubPem), requireSignature: true }).signed, true);

  // node signs, openssl verifies the same bytes.
  const sigDer = path.join(dir, 'sig.der');
  writeFileSync(sigDer, Buffer.from(sigFile(FULL, privateKey, 'sha256').toString(), 'base64'));
  const out = execFileSync('openssl', ['dgst', '-sha256', '-verify', pubPem, '-signature', sigDer, file]).toString();
  t.match(out, /Verified OK/);
});

t.test('signing keys: EC P-256/P-384 public keys only', async (t) => {
  const a = p256();
  const b = p384();
  const pem = [a.publicKey, b.publicKey].map((k) => k.export({ type: 'spki', format: 'pem' })).join('');
  t.equal(parseSigningKeysPem(pem, 'keys.pem').length, 2);
  t.throws(() => parseSigningKeysPem('nothing here', 'keys.pem'), ConfigError);
  t.throws(() => checkSigningKeys([generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey]), /P-256 or P-384/);
  t.throws(() => checkSigningKeys([generateKeyPairSync('ed25519').publicKey]), /P-256 or P-384/);
  t.throws(() => checkSigningKeys([a.privateKey]), /got a private key/);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  t.throws(() => parseSigningKeysPem(rsa.export({ type: 'spki', format: 'pem' }) as string, 'rsa.pem'), /P-256 or P-384/);
});

t.test('applyReferenceValues: the stricter/explicit requirement wins', async (t) => {
  const rv: ReferenceValues = parse(FULL);
  t.same(applyReferenceValues({ referenceValues: 'prod' }, rv), {
    referenceValues: 'prod',
    expectedMeasurements: [M1, M2],
    minimumSecurityVersion: 2,
    minimumTcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
    allowedChipIds: [CHIP],
    pcrs: { '0': '00'.repeat(32), '7': 'ab'.repeat(32) },
    tpmAkSpkiSha256: [AK],
  });
  const merged = applyReferenceValues(
    {
      referenceValues: 'prod',
      teeType: 'sev-snp',
      expectedMeasurements: [M2],
      minimumSecurityVersion: 5,
      minimumTcb: { bootloader: 1, snp: 9, fmc: 1 },
      allowedChipIds: [CHIP, 'ee'.repeat(64)],
      pcrs: { '7': 'ab'.repeat(32), '8': '11'.repeat(32) },
    },
    rv,
  );
  t.same(merged.expectedMeasurements, [M2], "the policy's explicit list wins");
  t.equal(merged.minimumSecurityVersion, 5, 'higher minimum wins');
  t.same(merged.minimumTcb, { bootloader: 3, snp: 9, fmc: 1, tee: 0, microcode: 115 }, 'per component max');
  t.same(merged.allowedChipIds, [CHIP], 'intersection');
  t.same(merged.pcrs, { '0': '00'.repeat(32), '7': 'ab'.repeat(32), '8': '11'.repeat(32) }, 'union');
  t.equal(merged.teeType, 'sev-snp');
  t.equal(applyReferenceValues({ minimumSecurityVersion: 1 }, rv).minimumSecurityVersion, 2);

  let err = refused(t, () => applyReferenceValues({ pcrs: { '7': 'cd'.repeat(32) } }, rv), 'reference_values_conflict');
  t.match(err.message, /PCR 7/);
  refused(t, () => applyReferenceValues({ allowedChipIds: ['ee'.repeat(64)] }, rv), 'reference_values_conflict');
  refused(t, () => applyReferenceValues({ referenceValues: 'dev' }, rv), 'reference_values_conflict');
  const tpmOnly = parse(rvText({ measurements: [], extra: `  pcrs: { 7: "${'ab'.repeat(32)}" }` }));
  t.notOk('expectedMeasurements' in applyReferenceValues({}, tpmOnly), 'an empty reference list adds no measurement check');
});
