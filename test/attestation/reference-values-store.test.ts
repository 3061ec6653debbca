import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError } from '../../src/errors.js';
import { ReferenceValueStore } from '../../src/attestation/reference-values.js';
import { ReferenceValuesError } from '../../src/attestation/reference-values-parse.js';
import { capturingLogger } from '../helpers/logger.js';

const M1 = 'a1'.repeat(48);
const M2 = 'b2'.repeat(48);
const rvText = (name: string, measurement: string, expires = '2027-06-30T00:00:00Z') =>
  `reference_values:\n  name: ${name}\n  expires: ${expires}\n  measurements: ["${measurement}"]\n`;
const sigOf = (text: string, key: KeyObject) => sign('sha256', Buffer.from(text), key).toString('base64') + '\n';

/** Waits for one event; a generous limit turns "never happened" into a failure instead of a hang. */
function next<T>(s: ReferenceValueStore, event: 'reload' | 'error', limitMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' event within ${limitMs} ms`)), limitMs);
    s.once(event as 'reload', (v: unknown) => {
      clearTimeout(timer);
      resolve(v as T);
    });
  });
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rv-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A clock the test moves by hand. */
function clock(iso: string) {
  let now = Date.parse(iso);
  return { now: () => now, set: (s: string) => void (now = Date.parse(s)) };
}

t.test('open(): missing, invalid, unsigned or expired files are errors; no signing keys when required is a config error', async (t) => {
  const dir = tempDir(t);
  const prod = path.join(dir, 'prod.yaml');
  writeFileSync(prod, rvText('prod', M1));
  const c = clock('2026-01-01T00:00:00Z');
  const open = (files: Record<string, string>, extra: Partial<Parameters<typeof ReferenceValueStore.open>[0]> = {}) =>
    ReferenceValueStore.open({ files, keys: [], requireSignature: false, now: c.now, ...extra });

  await t.rejects(open({ prod, dev: path.join(dir, 'dev.yaml') }), { reason: 'reference_values_invalid', message: /dev\.yaml.*ENOENT/ });
  await t.rejects(open({ staging: prod }), { reason: 'reference_values_invalid', message: /prod\.yaml:2:9/ });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await t.rejects(open({ prod }, { keys: [publicKey], requireSignature: true }), { name: 'ReferenceValuesError', reason: 'reference_values_unsigned' });
  await t.rejects(open({ prod }, { requireSignature: true }), ConfigError);
  c.set('2028-01-01T00:00:00Z');
  await t.rejects(open({ prod }), { name: 'ReferenceValuesError', reason: 'reference_values_expired' });
});

t.test('get() fails closed at expiry; version() combines all files', async (t) => {
  const dir = tempDir(t);
  const files = { prod: path.join(dir, 'prod.yaml'), dev: path.join(dir, 'dev.yaml') };
  writeFileSync(files.prod, rvText('prod', M1, '2026-06-01T00:00:00Z'));
  writeFileSync(files.dev, rvText('dev', M2));
  const c = clock('2026-01-01T00:00:00Z');
  const logger = capturingLogger();
  const store = await ReferenceValueStore.open({ files, keys: [], requireSignature: false, now: c.now, logger, debounceMs: 60_000 });
  t.teardown(() => store.close());

  t.same(store.get('prod')?.measurements, [M1]);
  t.same(store.get('dev')?.measurements, [M2]);
  t.equal(store.get('staging'), undefined, 'unknown name');
  t.throws(() => store.require('staging'), { name: 'ReferenceValuesError', reason: 'reference_values_invalid' });
  t.match(store.version(), /^[0-9a-f]{16}$/);
  t.same(store.names().sort(), ['dev', 'prod']);

  c.set('2026-06-01T00:00:00Z');
  t.equal(store.get('prod'), undefined, 'expired at now(): refused');
  t.throws(() => store.require('prod'), { name: 'ReferenceValuesError', reason: 'reference_values_expired' });
  t.ok(store.get('dev'), 'other environments are unaffected');
  t.equal(logger.lines.filter((l) => l.obj.reason === 'reference_values_expired').length, 1, 'expiry logged once');

  // Renewal is picked up by reload() (the watcher calls it); the version changes.
  const before = store.version();
  writeFileSync(files.prod, rvText('prod', M1, '2027-06-01T00:00:00Z'));
  t.equal(store.reload(), true);
  t.ok(store.get('prod'));
  t.not(store.version(), before);
  t.equal(store.reload(), false, 'unchanged content is no reload');
});

t.test('hot reload: good change swaps, broken change keeps the last good values', async (t) => {
  const dir = tempDir(t);
  const prod = path.join(dir, 'prod.yaml');
  writeFileSync(prod, rvText('prod', M1));
  const logger = capturingLogger();
  const store = await ReferenceValueStore.open({ files: { prod }, keys: [], requireSignature: false, logger, debounceMs: 20 });
  t.teardown(() => store.close());
  const v1 = store.version();

  let reloaded = next<string>(store, 'reload');
  writeFileSync(prod, rvText('prod', M2));
  t.equal(await reloaded, 'prod');
  t.same(store.get('prod')?.measurements, [M2]);
  const v2 = store.version();
  t.not(v2, v1);

  const failed = next<ReferenceValuesError>(store, 'error');
  writeFileSync(prod, `${rvText('prod', M1)}  pcrs: { 99: "00" }\n`);
  const err = await failed;
  t.equal(err.reason, 'reference_values_invalid');
  t.match(err.problems[0], { file: prod, line: 5, column: 11, key: 'reference_values.pcrs.99' });
  t.same(store.get('prod')?.measurements, [M2], 'last good values stay');
  t.equal(store.version(), v2);
  const logged = logger.lines.find((l) => l.level === 'error');
  t.match(logged?.msg, `${prod}:5:11: reference_values.pcrs.99: PCR index must be 0-23`);
  t.match(logged?.obj, { reason: 'reference_values_invalid', name: 'prod', line: 5, column: 11 });

  // An expired replacement is refused the same way.
  const expired = next<ReferenceValuesError>(store, 'error');
  writeFileSync(prod, rvText('prod', M1, '2020-01-01T00:00:00Z'));
  t.equal((await expired).reason, 'reference_values_expired');
  t.same(store.get('prod')?.measurements, [M2]);

  // Atomic replace by rename recovers.
  reloaded = next<string>(store, 'reload');
  writeFileSync(path.join(dir, '.prod.tmp'), rvText('prod', M1));
  renameSync(path.join(dir, '.prod.tmp'), prod);
  await reloaded;
  t.same(store.get('prod')?.measurements, [M1]);
});

t.test('hot reload with signing required: unsigned and badly signed replacements are refused', async (t) => {
  const dir = tempDir(t);
  const prod = path.join(dir, 'prod.yaml');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const good = rvText('prod', M1);
  writeFileSync(prod, good);
  writeFileSync(`${prod}.sig`, sigOf(good, privateKey));
  const store = await ReferenceValueStore.open({ files: { prod }, keys: [publicKey], requireSignature: true, debounceMs: 20 });
  t.teardown(() => store.close());
  t.equal(store.get('prod')?.signed, true);

  // New content, old signature: refused.
  let failed = next<ReferenceValuesError>(store, 'error');
  const update = rvText('prod', M2);
  writeFileSync(prod, update);
  t.equal((await failed).reason, 'reference_values_bad_signature');
  t.same(store.get('prod')?.measurements, [M1]);

  // Signed by a key that is not configured: refused.
  failed = next<ReferenceValuesError>(store, 'error');
  writeFileSync(`${prod}.sig`, sigOf(update, other.privateKey));
  t.equal((await failed).reason, 'reference_values_bad_signature');

  // Signature removed: unsigned.
  failed = next<ReferenceValuesError>(store, 'error');
  unlinkSync(`${prod}.sig`);
  t.equal((await failed).reason, 'reference_values_unsigned');
  t.same(store.get('prod')?.measurements, [M1]);

  // The right signature arrives: swapped in.
  const reloaded = next<string>(store, 'reload');
  writeFileSync(`${prod}.sig`, sigOf(update, privateKey));
  await reloaded;
  t.same(store.get('prod')?.measurements, [M2]);
  t.equal(store.get('prod')?.signed, true);
});

t.test('a Kubernetes ConfigMap-style symlink swap of file and signature together is picked up', async (t) => {
  const dir = tempDir(t);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const sig384 = (text: string) => sign('sha384', Buffer.from(text), privateKey).toString('base64');
  const version = (v: string, text: string) => {
    mkdirSync(path.join(dir, v));
    writeFileSync(path.join(dir, v, 'prod.yaml'), text);
    writeFileSync(path.join(dir, v, 'prod.yaml.sig'), sig384(text));
  };
  version('..v1', rvText('prod', M1));
  symlinkSync('..v1', path.join(dir, '..data'));
  symlinkSync('..data/prod.yaml', path.join(dir, 'prod.yaml'));
  symlinkSync('..data/prod.yaml.sig', path.join(dir, 'prod.yaml.sig'));
  const store = await ReferenceValueStore.open({ files: { prod: path.join(dir, 'prod.yaml') }, keys: [publicKey], requireSignature: true, debounceMs: 20 });
  t.teardown(() => store.close());
  t.same(store.get('prod')?.measurements, [M1]);

  const reloaded = next<string>(store, 'reload');
  version('..v2', rvText('prod', M2));
  symlinkSync('..v2', path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  await reloaded;
  t.same(store.get('prod')?.measurements, [M2]);
});
