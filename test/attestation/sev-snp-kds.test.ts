/**
 * KdsCollateral against a fake AMD KDS on 127.0.0.1 serving the real conformance VCEKs
 * (../shared/conformance/sev-snp, see PROVENANCE.md) at the URLs real KDS uses.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { parseSnpEndorsementCert } from '../../src/attestation/sev-snp/certs.js';
import { KdsCollateral, MAX_PREFETCHES_IN_FLIGHT, retryAfterMs, type KdsOptions } from '../../src/attestation/sev-snp/kds.js';
import { kdsCertChainPath, kdsVcekPath, vcekKeyForCert } from '../../src/attestation/sev-snp/kds-key.js';
import { verifySnpReport } from '../../src/attestation/sev-snp/verify.js';
import { conformance } from '../helpers/paths.js';
import { quietLogger } from '../helpers/logger.js';

const found = conformance('sev-snp');
if ('skip' in found) {
  t.skip(found.skip, () => {});
} else {
  run(found.dir);
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function run(dir: string): void {
  const read = (rel: string) => readFileSync(path.join(dir, rel));
  const gsg = {
    report: read('go-sev-guest-milan/attestation.bin'),
    vcek: read('go-sev-guest-milan/vcek.testcer'),
    path:
      '/vcek/v1/Milan/3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d' +
      '?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68',
  };
  const virtee = {
    report: Buffer.from(read('virtee-sev/report_milan.hex').toString('latin1').trim(), 'hex'),
    vcek: read('virtee-sev/vcek_milan.der'),
    path:
      '/vcek/v1/Milan/d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6' +
      '?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115',
  };
  const genoa = {
    report: read('trustee-azure-genoa/derived/snp_report_genoa.bin'),
    pem: read('trustee-azure-genoa/vcek-genoa.pem'),
    path:
      '/vcek/v1/Genoa/0506ffba875e939c2729d20c74eb72b4c5ba6bf7ea1faaa640141f12c6d64782fb487f68ce69dcd021e914cc0d9244327bc121f0242d6470903ad1d4aaea4ad1' +
      '?blSPL=10&teeSPL=0&snpSPL=23&ucodeSPL=84',
  };
  const roots = (f: string) => read(`amd-roots/go-sev-guest/${f}`).toString('utf8');
  const anchors = loadSnpAnchors([roots('ask_ark_milan.pem'), roots('ask_ark_genoa.pem')]);
  const genoaOnly = loadSnpAnchors([roots('ask_ark_genoa.pem')]);

  // The fake KDS: records every request, answers with the current handler.
  const requests: string[] = [];
  let handler: Handler = (_req, res) => res.writeHead(404).end();
  const serveVceks = (routes: Record<string, Buffer>): Handler => (req, res) => {
    const body = routes[req.url!];
    if (!body) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-type': 'application/pkix-cert' }).end(body);
  };
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  let baseUrl = '';
  const tmpRoot = mkdtempSync(path.join(tmpdir(), 'kds-test-'));
  let n = 0;
  const freshDir = () => path.join(tmpRoot, `cache-${++n}`);
  const warnings: string[] = [];
  const logger = { ...quietLogger, warn: (o: object, msg?: string) => void warnings.push(`${msg} ${JSON.stringify(o)}`) };
  const kds = (cacheDir: string, extra: Partial<KdsOptions> = {}) =>
    new KdsCollateral({ cacheDir, baseUrl, product: 'Milan', logger, timeoutMs: 15_000, ...extra }); // generous: a loaded machine answers slowly
  const cacheFiles = (d: string) => readdirSync(d).filter((f) => !f.startsWith('.'));

  t.before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(tmpRoot, { recursive: true, force: true });
  });
  t.beforeEach(() => {
    requests.length = 0;
    warnings.length = 0;
    handler = serveVceks({ [gsg.path]: gsg.vcek, [virtee.path]: virtee.vcek });
  });

  t.test('fetches each report’s VCEK from the exact KDS URL, caches it 0600 in a 0700 dir', async (t) => {
    const cacheDir = freshDir();
    const c = kds(cacheDir, { anchors });
    for (const s of [gsg, virtee]) {
      t.equal(c.vcekFor(s.report), undefined, 'nothing in memory before prefetch');
      t.same(await c.prefetch(s.report), { ok: true, source: 'kds' });
      t.same(c.vcekFor(s.report), s.vcek, 'vcekFor returns the DER KDS served');
    }
    t.same(requests, [`GET ${gsg.path}`, `GET ${virtee.path}`]);
    t.equal(statSync(cacheDir).mode & 0o777, 0o700, 'cache dir is 0700');
    const files = readdirSync(cacheDir);
    t.equal(files.length, 2, 'one file per key, no temp files left');
    for (const f of files) {
      t.match(f, /^[0-9a-f]{64}\.der$/);
      t.equal(statSync(path.join(cacheDir, f)).mode & 0o777, 0o600, `${f} is 0600`);
      const openssl = spawnSync('openssl', ['x509', '-inform', 'DER', '-noout', '-subject', '-in', path.join(cacheDir, f)], { encoding: 'utf8' });
      t.match(openssl.stdout, /CN\s*=\s*SEV-VCEK/, 'openssl reads the cached file as the VCEK');
    }
    // The served VCEK really verifies the report (memory only, as on the request path).
    const claims = verifySnpReport(gsg.report, { anchors, vcek: c.vcekFor(gsg.report)! }, new Date('2026-01-01T00:00:00Z'));
    t.equal(claims.product, 'Milan');
  });

  t.test('cache hit after restart: a new instance on the same dir needs no KDS', async (t) => {
    const cacheDir = freshDir();
    await kds(cacheDir).prefetch(gsg.report);
    requests.length = 0;
    const restarted = kds(cacheDir, { anchors });
    t.equal(restarted.vcekFor(gsg.report), undefined, 'memory is empty until load');
    await restarted.load();
    t.same(restarted.vcekFor(gsg.report), gsg.vcek, 'loaded from disk');
    t.same(await restarted.prefetch(gsg.report), { ok: true, source: 'cache' });
    const unloaded = kds(cacheDir);
    t.same(await unloaded.prefetch(gsg.report), { ok: true, source: 'cache' }, 'prefetch reads the file without load()');
    t.same(unloaded.vcekFor(gsg.report), gsg.vcek);
    t.same(requests, [], 'no request after restart');
  });

  t.test('concurrent prefetches for one report share one KDS request', async (t) => {
    handler = (req, res) => setTimeout(() => serveVceks({ [gsg.path]: gsg.vcek })(req, res), 100);
    const c = kds(freshDir());
    const [a, b] = await Promise.all([c.prefetch(gsg.report), c.prefetch(gsg.report)]);
    t.same(a, { ok: true, source: 'kds' });
    t.same(b, a);
    t.same(requests, [`GET ${gsg.path}`]);
  });

  t.test('reports with made-up chip IDs: at most MAX_PREFETCHES_IN_FLIGHT lookups at once, the rest kds_busy', async (t) => {
    const held: ServerResponse[] = [];
    handler = (_req, res) => void held.push(res);
    const c = kds(freshDir());
    const reports = Array.from({ length: 50 }, (_, i) => {
      const r = Buffer.from(gsg.report);
      r.writeUInt32BE(i + 1, 0x1a0); // the chip ID: a different KDS key per report (prefetch checks no signature)
      return r;
    });
    const results = reports.map((r) => c.prefetch(r));
    const start = Date.now();
    while (held.length < MAX_PREFETCHES_IN_FLIGHT && Date.now() - start < 30_000) await new Promise((r) => setTimeout(r, 20));
    t.equal(held.length, MAX_PREFETCHES_IN_FLIGHT, 'the KDS sees the first lookups');
    const busy = await Promise.all(results.slice(MAX_PREFETCHES_IN_FLIGHT));
    t.ok(busy.every((r) => r.ok === false && r.reason === 'kds_busy'), 'the rest fail at once with kds_busy');
    t.equal(warnings.length, 0, 'refusals for a full lookup table are not logged');
    for (const res of held) res.writeHead(404).end();
    handler = (_req, res) => res.writeHead(404).end();
    const first = await Promise.all(results.slice(0, MAX_PREFETCHES_IN_FLIGHT));
    t.ok(first.every((r) => r.ok === false && r.reason === 'kds_unavailable'), 'the lookups that ran got the KDS answer');
    t.equal(requests.length, MAX_PREFETCHES_IN_FLIGHT, 'no more requests reached the KDS');
    t.match(await c.prefetch(reports[49]!), { reason: 'kds_unavailable' }, 'once lookups finish, new ones run again');
  });

  t.test('KDS 500, timeout, and 429: the stale entry keeps being served', async (t) => {
    const cacheDir = freshDir();
    await kds(cacheDir).prefetch(gsg.report);
    let offset = 0;
    const now = () => Date.now() + offset;
    // A generous timeout where the KDS answers (a loaded CI machine can be slow), a short one
    // for the step that waits it out; both read the same cache.
    const c = kds(cacheDir, { refreshAfterMs: 0, timeoutMs: 15_000, now });

    handler = (_req, res) => res.writeHead(500).end('oops');
    let r = await c.prefetch(gsg.report);
    t.match(r, { ok: true, source: 'stale', reason: 'kds_unavailable', error: /500/ });
    t.same(c.vcekFor(gsg.report), gsg.vcek, 'stale VCEK still served after 500');
    t.same(await kds(freshDir()).prefetch(gsg.report), { ok: false, source: 'none', reason: 'kds_unavailable', error: `KDS answered 500 for ${gsg.path}` }, 'no cache: none');

    handler = () => undefined; // never answers
    const short = kds(cacheDir, { refreshAfterMs: 0, timeoutMs: 1500, now });
    r = await short.prefetch(gsg.report);
    t.match(r, { ok: true, source: 'stale', reason: 'kds_timeout' });
    t.same(short.vcekFor(gsg.report), gsg.vcek, 'stale VCEK still served after a timeout');

    handler = (_req, res) => res.writeHead(429, { 'retry-after': '120' }).end();
    requests.length = 0;
    r = await c.prefetch(gsg.report);
    t.match(r, { ok: true, source: 'stale', reason: 'kds_rate_limited' });
    // The time left of the 120 s back-off, on a real clock that may have ticked since it was set.
    t.ok(r.retryAfterMs! > 119_000 && r.retryAfterMs! <= 120_000, `retryAfterMs ${r.retryAfterMs}`);
    r = await c.prefetch(virtee.report);
    t.match(r, { ok: false, source: 'none', reason: 'kds_rate_limited' }, 'the back-off covers every key');
    t.ok(r.retryAfterMs! > 0 && r.retryAfterMs! <= 120_000);
    t.same(requests, [`GET ${gsg.path}`], 'no request while Retry-After is in force');
    t.same(c.vcekFor(gsg.report), gsg.vcek);

    offset = 121_000;
    handler = serveVceks({ [gsg.path]: gsg.vcek });
    t.same(await c.prefetch(gsg.report), { ok: true, source: 'kds' }, 'asks again once Retry-After has passed');
    t.equal(requests.length, 2);
  });

  t.test('Retry-After parsing: seconds, HTTP date, junk', async (t) => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    t.equal(retryAfterMs('30', now), 30_000);
    t.equal(retryAfterMs('Thu, 01 Jan 2026 00:01:00 GMT', now), 60_000);
    t.equal(retryAfterMs('Wed, 31 Dec 2025 00:00:00 GMT', now), 0, 'a past date means now');
    t.equal(retryAfterMs('soon', now), undefined);
    t.equal(retryAfterMs(null, now), undefined);
  });

  t.test('a wrong or junk answer from KDS is refused and never cached', async (t) => {
    const cacheDir = freshDir();
    const c = kds(cacheDir);
    handler = serveVceks({ [gsg.path]: virtee.vcek });
    let r = await c.prefetch(gsg.report);
    t.match(r, { ok: false, source: 'none', reason: 'kds_bad_answer', error: /hwID .*TCB/ });
    t.equal(c.vcekFor(gsg.report), undefined);

    handler = serveVceks({ [gsg.path]: Buffer.from('<html>maintenance</html>') });
    t.match(await c.prefetch(gsg.report), { ok: false, source: 'none', reason: 'kds_bad_answer', error: /not a VCEK/ });
    handler = serveVceks({ [gsg.path]: Buffer.alloc(100_000, 0x30) });
    t.match(await c.prefetch(gsg.report), { ok: false, reason: 'kds_bad_answer', error: /bytes/ }, 'oversized body');
    t.same(existsSync(cacheDir) ? cacheFiles(cacheDir) : [], [], 'nothing written');

    // With anchors, a VCEK that matches the report but not the anchors is refused too.
    handler = serveVceks({ [gsg.path]: gsg.vcek });
    r = await kds(freshDir(), { anchors: genoaOnly }).prefetch(gsg.report);
    t.match(r, { ok: false, source: 'none', reason: 'kds_bad_answer', error: /chain/ });

    // A stale entry survives a wrong answer untouched.
    await kds(cacheDir).prefetch(gsg.report);
    const stale = kds(cacheDir, { refreshAfterMs: 0 });
    handler = serveVceks({ [gsg.path]: virtee.vcek });
    t.match(await stale.prefetch(gsg.report), { ok: true, source: 'stale', reason: 'kds_bad_answer' });
    t.same(stale.vcekFor(gsg.report), gsg.vcek);
    await stale.load();
    t.same(stale.vcekFor(gsg.report), gsg.vcek, 'the file on disk is unchanged');
  });

  t.test('offline mode reads files only and never calls fetch', async (t) => {
    let fetchCalls = 0;
    const spy = (async () => {
      fetchCalls++;
      throw new Error('offline mode must not fetch');
    }) as unknown as typeof fetch;
    const cacheDir = freshDir();
    const off = kds(cacheDir, { offline: true, fetch: spy, refreshAfterMs: 0 });
    t.match(await off.prefetch(gsg.report), { ok: false, source: 'none', reason: 'collateral_missing', error: /offline/ });
    await kds(cacheDir).prefetch(gsg.report); // another (online) process fills the cache
    t.same(await off.prefetch(gsg.report), { ok: true, source: 'cache' }, 'stale by age, but offline serves the file');
    t.same(off.vcekFor(gsg.report), gsg.vcek);
    const off2 = kds(cacheDir, { offline: true, fetch: spy });
    await off2.load();
    t.same(off2.vcekFor(gsg.report), gsg.vcek);
    t.equal(fetchCalls, 0, 'fetch never called');
    t.same(requests, [`GET ${gsg.path}`], 'only the online instance reached KDS');
  });

  t.test('load() skips files that are misplaced, tampered, loose or not files', async (t) => {
    const { writeFileSync, chmodSync, symlinkSync, mkdirSync, copyFileSync } = await import('node:fs');
    const cacheDir = freshDir();
    await kds(cacheDir).prefetch(gsg.report);
    await kds(cacheDir).prefetch(virtee.report);
    const [a, b] = readdirSync(cacheDir).sort();
    const gsgFile = readFileSync(path.join(cacheDir, a!)).equals(gsg.vcek) ? a! : b!;
    const virteeFile = gsgFile === a ? b! : a!;
    copyFileSync(path.join(cacheDir, gsgFile), path.join(cacheDir, virteeFile)); // right cert, wrong name
    const junk = `${'0'.repeat(64)}.der`;
    writeFileSync(path.join(cacheDir, junk), 'junk', { mode: 0o600 });
    const loose = `${'1'.repeat(64)}.der`;
    writeFileSync(path.join(cacheDir, loose), gsg.vcek);
    chmodSync(path.join(cacheDir, loose), 0o666);
    symlinkSync(path.join(cacheDir, gsgFile), path.join(cacheDir, `${'2'.repeat(64)}.der`));
    mkdirSync(path.join(cacheDir, `${'3'.repeat(64)}.der`));

    const c = kds(cacheDir);
    await c.load();
    t.same(c.vcekFor(gsg.report), gsg.vcek, 'the good file loads');
    t.equal(c.vcekFor(virtee.report), undefined, 'a VCEK under another key’s name is ignored');
    t.equal(warnings.length, 5, 'each bad file is logged');
    t.match(warnings.join('\n'), /holds the VCEK for Milan:3ac3/);
    t.match(warnings.join('\n'), /writable by group or others/);
    t.match(warnings.join('\n'), /symlink/);
    t.match(warnings.join('\n'), /not a regular file/);

    await t.resolves(kds(freshDir()).load(), 'a missing cache dir is an empty cache');
    writeFileSync(path.join(tmpRoot, 'not-a-dir'), '');
    const failure = await kds(path.join(tmpRoot, 'not-a-dir')).load().then(() => undefined, (e: { reason?: string }) => e);
    t.equal(failure?.reason, 'kds_cache_unreadable', 'an unreadable cache dir rejects, typed');
  });

  t.test('product: CPUID (v3) decides, PEM answers are stored as DER, conflicts refuse', async (t) => {
    const cacheDir = freshDir();
    handler = serveVceks({ [genoa.path]: genoa.pem });
    const c = kds(cacheDir, { product: undefined, anchors });
    t.same(await c.prefetch(genoa.report), { ok: true, source: 'kds' });
    t.same(requests, [`GET ${genoa.path}`]);
    const der = c.vcekFor(genoa.report)!;
    t.equal(der[0], 0x30, 'DER, not PEM');
    t.equal(parseSnpEndorsementCert(der).product, 'Genoa');
    t.same(readFileSync(path.join(cacheDir, readdirSync(cacheDir)[0]!)), der);

    const pinned = kds(freshDir(), { product: 'Milan' });
    t.match(await pinned.prefetch(genoa.report), { ok: false, source: 'none', reason: 'tcb_mismatch' });
    t.equal(requests.length, 1, 'no request when the product is contradictory');
  });

  t.test('reports with no KDS VCEK: no request, typed reasons, never a throw', async (t) => {
    const c = kds(freshDir(), { product: undefined });
    t.match(await c.prefetch(gsg.report), { ok: false, source: 'none', reason: 'collateral_missing' }, 'v2 report, no configured product');
    const vlek = read('trustee-milan/test-vlek-report.bin');
    t.match(await kds(freshDir()).prefetch(vlek), { ok: false, source: 'none', reason: 'collateral_missing', error: /VLEK/ });
    const masked = Buffer.from(gsg.report);
    masked[0x48] |= 2;
    t.match(await kds(freshDir()).prefetch(masked), { ok: false, reason: 'collateral_missing', error: /MASK_CHIP_KEY/ });
    t.match(await c.prefetch(new Uint8Array(10)), { ok: false, source: 'none', reason: 'evidence_malformed' });
    t.equal(c.vcekFor(new Uint8Array(10)), undefined);
    t.equal(c.vcekFor(vlek), undefined);
    t.same(requests, []);
  });

  t.test('URL paths: Turin uses 8 hwID bytes and fmcSPL; chain paths', async (t) => {
    const turin = vcekKeyForCert(parseSnpEndorsementCert(read('virtee-sev/vcek_turin.der')));
    t.equal(kdsVcekPath(turin), '/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=0&blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=9');
    t.equal(kdsVcekPath(vcekKeyForCert(parseSnpEndorsementCert(gsg.vcek))), gsg.path);
    t.equal(kdsCertChainPath('Genoa', 'vcek'), '/vcek/v1/Genoa/cert_chain');
    t.equal(kdsCertChainPath('Milan', 'vlek'), '/vlek/v1/Milan/cert_chain');
  });
}
