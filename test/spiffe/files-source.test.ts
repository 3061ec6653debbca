/**
 * FilesX509Source over real files: initial load (own + federated bundles), an atomically
 * replaced set (write temp + rename; and the Kubernetes `..data` symlink swap) is picked up, a
 * broken or inconsistent write keeps the previous good state and is reported, missing files at
 * start time make waitReady time out and are picked up once they appear.
 */
import t from 'tap';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DevCa } from '../../src/dev/ca.js';
import { FilesX509Source } from '../../src/spiffe/files-source.js';
import type { IdentityState } from '../../src/spiffe/source.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { EventLog, sleep, tempSocketDir } from '../helpers/workload-api.js';

const { dir, cleanup } = tempSocketDir('files-');
t.teardown(cleanup);
const withReason = (reason: string) => ({ message: /./, reason });
const serial = (s: IdentityState): string => s.svid.certificates[0]!.serialNumber;

let caPromise: Promise<{ ca: DevCa; partner: DevCa }> | undefined;
function cas(): Promise<{ ca: DevCa; partner: DevCa }> {
  caPromise ??= (async () => ({
    ca: await DevCa.create({ trustDomain: 'example.org' }),
    partner: await DevCa.create({ trustDomain: 'partner.example' }),
  }))();
  return caPromise;
}

/** Writes `content` to `file` atomically: temp file in the same folder, then rename over. */
function atomicWrite(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

async function until(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function setup(name: string): Promise<{ d: string; files: { cert: string; key: string; bundle: string; fed: string }; ca: DevCa; partner: DevCa }> {
  const { ca, partner } = await cas();
  const d = path.join(dir, name);
  mkdirSync(d);
  const files = { cert: path.join(d, 'svid.pem'), key: path.join(d, 'svid_key.pem'), bundle: path.join(d, 'bundle.pem'), fed: path.join(d, 'partner.pem') };
  return { d, files, ca, partner };
}

t.test('initial load, atomic replace picked up, broken writes keep the previous state', async (t) => {
  const { files, ca, partner } = await setup('main');
  const s1 = await ca.issueX509Svid('spiffe://example.org/files', { ttlSeconds: 600 });
  writeFileSync(files.cert, s1.certChainPem);
  writeFileSync(files.key, s1.keyPem);
  writeFileSync(files.bundle, ca.bundle().toPem());
  writeFileSync(files.fed, partner.bundle().toPem());

  const source = new FilesX509Source({
    cert: files.cert,
    key: files.key,
    bundle: files.bundle,
    federated: { 'spiffe://partner.example': files.fed },
    debounceMs: 50,
  });
  t.teardown(() => source.close());
  await source.start();
  const first = source.current();
  t.ok(first, 'loaded during start()');
  t.equal(first!.generation, 1);
  t.equal(first!.svid.id.toString(), 'spiffe://example.org/files');
  t.equal(serial(first!), s1.svid.certificates[0]!.serialNumber);
  t.same(first!.bundles.trustDomains().map(String), ['example.org', 'partner.example']);
  t.ok(first!.bundles.getX509Bundle(parseTrustDomain('partner.example'))!.equals(partner.bundle()));
  t.equal(source.health().connected, true);
  const states = new EventLog<IdentityState>();
  source.subscribe(states.push);

  // Atomic replace of key then cert (as a rotating agent writes them).
  const s2 = await ca.issueX509Svid('spiffe://example.org/files', { ttlSeconds: 600 });
  atomicWrite(files.key, s2.keyPem);
  atomicWrite(files.cert, s2.certChainPem);
  const second = await states.next((s) => serial(s) === s2.svid.certificates[0]!.serialNumber, 30_000, 'replaced SVID');
  t.equal(second.generation, source.current()!.generation);
  t.ok(states.items.every((s) => s.svid.id.toString() === 'spiffe://example.org/files'), 'only valid sets published');

  // A half-written cert (truncated PEM, written in place): rejected, previous state kept.
  const genBefore = source.current()!.generation;
  writeFileSync(files.cert, s2.certChainPem.slice(0, 200));
  await until(() => source.health().lastError !== undefined, 30_000, 'broken cert reported');
  t.equal(source.current(), second, 'previous good state kept');
  t.equal(source.health().connected, false);

  // Cert and key from different SVIDs: rejected too.
  const s3 = await ca.issueX509Svid('spiffe://example.org/files', { ttlSeconds: 600 });
  atomicWrite(files.cert, s3.certChainPem);
  await until(() => /does not match private key/.test(source.health().lastError ?? ''), 30_000, 'key mismatch reported');
  t.equal(source.current()!.generation, genBefore, 'still no new generation');
  t.match(source.health().unrecoverableError, /svid\.pem with key .*does not match private key/, 'named for readiness, with the files');

  // The key arrives: the set is consistent again.
  atomicWrite(files.key, s3.keyPem);
  await states.next((s) => serial(s) === s3.svid.certificates[0]!.serialNumber, 30_000, 'recovered SVID');
  t.equal(source.health().lastError, undefined);
  t.equal(source.health().unrecoverableError, undefined, 'readiness clears');
  t.equal(source.health().connected, true);

  // Federated bundle removed from disk: reported, state kept; bundle rotation then picked up.
  const partnerNew = await DevCa.create({ trustDomain: 'partner.example' });
  atomicWrite(files.fed, 'garbage');
  await until(() => source.health().lastError !== undefined, 30_000, 'bad federated bundle reported');
  atomicWrite(files.fed, partnerNew.bundle().toPem());
  const fedState = await states.next(
    (s) => s.bundles.getX509Bundle(parseTrustDomain('partner.example'))!.equals(partnerNew.bundle()),
    5000,
    'new federated bundle',
  );
  t.equal(serial(fedState), s3.svid.certificates[0]!.serialNumber, 'same SVID');
});

t.test('Kubernetes-style ..data symlink swap is picked up', async (t) => {
  const { d, ca } = await setup('k8s');
  const writeVersion = async (v: string): Promise<string> => {
    const vdir = path.join(d, `..${v}`);
    mkdirSync(vdir);
    const s = await ca.issueX509Svid('spiffe://example.org/k8s', { ttlSeconds: 600 });
    writeFileSync(path.join(vdir, 'tls.crt'), s.certChainPem);
    writeFileSync(path.join(vdir, 'tls.key'), s.keyPem);
    writeFileSync(path.join(vdir, 'ca.crt'), ca.bundle().toPem());
    return s.svid.certificates[0]!.serialNumber;
  };
  const v1 = await writeVersion('v1');
  symlinkSync(`..v1`, path.join(d, '..data'));
  for (const f of ['tls.crt', 'tls.key', 'ca.crt']) symlinkSync(path.join('..data', f), path.join(d, f));

  const source = new FilesX509Source({ cert: path.join(d, 'tls.crt'), key: path.join(d, 'tls.key'), bundle: path.join(d, 'ca.crt'), debounceMs: 50 });
  t.teardown(() => source.close());
  await source.start();
  t.equal(serial(await source.waitReady(30_000)), v1);

  const v2 = await writeVersion('v2');
  symlinkSync('..v2', path.join(d, '..data_tmp'));
  renameSync(path.join(d, '..data_tmp'), path.join(d, '..data'));
  await until(() => serial(source.current()!) === v2, 30_000, 'swapped version');
  t.equal(source.current()!.generation, 2);
});

t.test('writes to other files in the same directory do not re-read the set', async (t) => {
  const { d, files, ca } = await setup('neighbour');
  const s1 = await ca.issueX509Svid('spiffe://example.org/n', { ttlSeconds: 600 });
  writeFileSync(files.cert, s1.certChainPem);
  writeFileSync(files.key, s1.keyPem);
  writeFileSync(files.bundle, ca.bundle().toPem());
  const source = new FilesX509Source({ cert: files.cert, key: files.key, bundle: files.bundle, debounceMs: 10, pollIntervalMs: 60_000 });
  t.teardown(() => source.close());
  // Counts reads of the set (a private method; the public effect of a re-read is only CPU).
  let reads = 0;
  const s = source as unknown as { readSet: () => Promise<unknown> };
  const readSet = s.readSet.bind(source);
  s.readSet = () => {
    reads++;
    return readSet();
  };
  await source.start();
  await source.waitReady(30_000);
  const before = reads;
  // An audit log written next to the certificates, as a busy sidecar does.
  for (let i = 0; i < 20; i++) {
    writeFileSync(path.join(d, 'audit.log'), `line ${i}\n`, { flag: 'a' });
    await sleep(15);
  }
  await sleep(100);
  t.equal(reads, before, 'no re-read for a neighbour file');
  // The watched names still are: a rotation by rename is picked up.
  const s2 = await ca.issueX509Svid('spiffe://example.org/n', { ttlSeconds: 600 });
  atomicWrite(files.key, s2.keyPem);
  atomicWrite(files.cert, s2.certChainPem);
  await until(() => serial(source.current()!) === s2.svid.certificates[0]!.serialNumber, 30_000, 'rotated SVID');
  t.ok(reads > before, 'a watched file change re-reads');
});

t.test('missing files: waitReady times out, files appearing later are picked up', async (t) => {
  const { files, ca } = await setup('late');
  const source = new FilesX509Source({ cert: files.cert, key: files.key, bundle: files.bundle, debounceMs: 30, pollIntervalMs: 200 });
  t.teardown(() => source.close());
  await source.start();
  t.equal(source.current(), undefined);
  t.match(source.health().lastError, /cannot read/);
  await t.rejects(source.waitReady(100), withReason('svid_timeout'));

  const s = await ca.issueX509Svid('spiffe://example.org/late', { ttlSeconds: 600 });
  const ready = source.waitReady(30_000);
  atomicWrite(files.bundle, ca.bundle().toPem());
  atomicWrite(files.key, s.keyPem);
  atomicWrite(files.cert, s.certChainPem);
  t.equal((await ready).svid.id.toString(), 'spiffe://example.org/late');
});

t.test('requireIdentity: bad files are refused at once, a leaf as the bundle too', async (t) => {
  const { files, ca } = await setup('strict');
  const s = await ca.issueX509Svid('spiffe://example.org/strict', { ttlSeconds: 600 });
  writeFileSync(files.cert, s.certChainPem);
  writeFileSync(files.key, s.keyPem);
  writeFileSync(files.bundle, s.certChainPem);
  const leafBundle = new FilesX509Source({ cert: files.cert, key: files.key, bundle: files.bundle });
  t.teardown(() => leafBundle.close());
  await t.rejects(leafBundle.requireIdentity(30_000), { reason: 'identity_files_invalid', message: /bundle\.pem holds a certificate that is not a CA/ });

  writeFileSync(files.bundle, ca.bundle().toPem());
  const good = new FilesX509Source({ cert: files.cert, key: files.key, bundle: files.bundle });
  t.teardown(() => good.close());
  t.equal((await good.requireIdentity(30_000)).svid.id.toString(), 'spiffe://example.org/strict');

  const late = new FilesX509Source({ cert: path.join(path.dirname(files.cert), 'late.pem'), key: files.key, bundle: files.bundle, pollIntervalMs: 200 });
  t.teardown(() => late.close());
  const waiting = late.requireIdentity(30_000);
  atomicWrite(path.join(path.dirname(files.cert), 'late.pem'), s.certChainPem);
  t.equal((await waiting).svid.id.toString(), 'spiffe://example.org/strict', 'a file written during the start-up wait is taken');
});

t.test('configuration errors are thrown up front', async (t) => {
  t.throws(() => new FilesX509Source({ cert: '', key: 'k', bundle: 'b' }), withReason('files_source_invalid'));
  t.throws(() => new FilesX509Source({ cert: 'c', key: 'k', bundle: 'b', federated: { 'Bad Domain': 'f' } }), withReason('spiffe_id_invalid'));
  const { files, ca } = await setup('own-fed');
  const s = await ca.issueX509Svid('spiffe://example.org/x', { ttlSeconds: 600 });
  writeFileSync(files.cert, s.certChainPem);
  writeFileSync(files.key, s.keyPem);
  writeFileSync(files.bundle, ca.bundle().toPem());
  writeFileSync(files.fed, ca.bundle().toPem());
  const source = new FilesX509Source({ cert: files.cert, key: files.key, bundle: files.bundle, federated: { 'example.org': files.fed } });
  t.teardown(() => source.close());
  await source.start();
  t.equal(source.current(), undefined, 'a federated entry for the own trust domain is refused');
  t.match(source.health().lastError, /own trust domain/);
});
