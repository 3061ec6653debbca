/**
 * Real AMD SEV-SNP samples from ../shared/conformance (see sev-snp/PROVENANCE.md and
 * tpm/PROVENANCE.md): each verifies or fails exactly as documented there.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadSnpAnchors, type SnpTrustAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { parseSnpEndorsementCert } from '../../src/attestation/sev-snp/certs.js';
import { describeSnpReport } from '../../src/attestation/sev-snp/claims.js';
import { verifySnpReport } from '../../src/attestation/sev-snp/verify.js';
import { verifyEndorsementChain } from '../../src/attestation/sev-snp/anchors.js';
import { conformance } from '../helpers/paths.js';
import { reasonOf } from '../helpers/attestation.js';

const found = conformance('sev-snp');
if ('skip' in found) {
  t.skip(found.skip, () => {});
} else {
  run(found.dir);
}

function run(dir: string): void {
  const read = (rel: string) => readFileSync(path.join(dir, rel));
  const tpmDir = path.join(dir, '../tpm/trustee-azure-snp-vtpm-milan');
  const roots = (sub: string) =>
    ['ask_ark_milan.pem', 'ask_ark_milan_vlek.pem', 'ask_ark_genoa.pem', 'ask_ark_genoa_vlek.pem', 'ask_ark_turin_vcek.pem', 'ask_ark_turin_vlek.pem'].map(
      (f) => readFileSync(path.join(dir, 'amd-roots', sub, f), 'utf8'),
    );
  const anchors = loadSnpAnchors(roots('go-sev-guest'));
  const NOW = new Date('2026-01-01T00:00:00Z');
  const gsgReport = read('go-sev-guest-milan/attestation.bin');
  const gsgVcek = read('go-sev-guest-milan/vcek.testcer');
  const vsReport = Buffer.from(read('virtee-sev/report_milan.hex').toString('latin1').trim(), 'hex');
  const trReport = read('trustee-milan/test-report.bin');
  const trVcek = read('trustee-milan/test-vcek.der');

  t.test('anchors: KDS cert_chain files and single-cert files give the same anchors', async (t) => {
    t.same(Object.keys(anchors.products).sort(), ['Genoa', 'Milan', 'Turin']);
    for (const p of ['Milan', 'Genoa', 'Turin'] as const) {
      t.ok(anchors.products[p]!.ask && anchors.products[p]!.asvk, `${p} has ASK and ASVK`);
    }
    const single = loadSnpAnchors(['milan', 'genoa', 'turin'].flatMap((p) => ['ark', 'ask'].map((r) => read(`amd-roots/virtee-sev/${p}_${r}.pem`).toString())));
    for (const p of ['Milan', 'Genoa', 'Turin'] as const) {
      t.equal(single.products[p]!.ark.fingerprint256, anchors.products[p]!.ark.fingerprint256, `${p} ARK`);
      t.equal(single.products[p]!.ask!.fingerprint256, anchors.products[p]!.ask!.fingerprint256, `${p} ASK`);
    }
    t.equal(
      anchors.products.Milan!.ark.fingerprint256,
      '69:D0:63:B4:53:44:D2:6A:2E:94:E1:F4:21:0D:E4:9E:F5:55:30:82:87:D4:C1:74:44:5C:95:63:9A:54:0B:CD',
    );
    t.equal(reasonOf(() => loadSnpAnchors([read('amd-roots/virtee-sev/milan_ask.pem').toString()])), 'config_invalid', 'ASK without ARK');
    t.equal(reasonOf(() => loadSnpAnchors(['no pem here'])), 'config_invalid', 'no PEM');
  });

  t.test('go-sev-guest Milan report (v2, DEBUG=1) verifies; claims show debug', async (t) => {
    const c = verifySnpReport(gsgReport, { anchors, vcek: gsgVcek }, new Date('2022-09-24T01:00:00Z'));
    t.equal(c.product, 'Milan');
    t.equal(c.version, 2);
    t.equal(c.policy.raw, '00000000000b0000');
    t.equal(c.policy.debug, true);
    t.equal(c.policy.smt, true);
    t.equal(c.vmpl, 0);
    t.equal(c.signing_key, 'vcek');
    t.equal(c.report_data, '0102030405' + '00'.repeat(59));
    t.equal(c.measurement, 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01');
    t.equal(c.report_id, '8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a');
    t.equal(c.report_id_ma, 'ff'.repeat(32));
    t.equal(c.host_data, '00'.repeat(32));
    t.match(c.chip_id, /^3ac3fe21e13fb099/);
    for (const k of ['current_tcb', 'reported_tcb', 'committed_tcb', 'launch_tcb'] as const) {
      t.same(c[k], { raw: '4405000000000002', bootloader: 2, tee: 0, snp: 5, microcode: 68 }, k);
    }
    t.same(c.firmware.current, { major: 1, minor: 49, build: 3 });
    t.equal(c.platform_info.raw, '0000000000000001');
    t.equal(c.cert.not_after, '2029-09-24T00:55:28.000Z');
    t.same(JSON.parse(JSON.stringify(c)), c, 'claims are plain JSON');
    const d = describeSnpReport(gsgReport);
    t.equal(d.verified, false);
    t.equal(d.product, null);
    t.equal(d.measurement, c.measurement);
  });

  t.test('virtee Milan report verifies; bit 7 of byte 21 flipped fails', async (t) => {
    const vcek = read('virtee-sev/vcek_milan.der');
    const c = verifySnpReport(vsReport, { anchors, vcek }, NOW);
    t.equal(c.policy.debug, false);
    t.equal(c.reported_tcb.raw, '7308000000000003');
    t.same(c.firmware.current, { major: 1, minor: 52, build: 4 });
    t.match(c.report_data, /^d447b55d197491bf/);
    const bad = Buffer.from(vsReport);
    bad[21]! ^= 0x80;
    t.equal(reasonOf(() => verifySnpReport(bad, { anchors, vcek }, NOW)), 'signature_invalid');
    const badVcek = Buffer.from(vcek);
    badVcek[40]! ^= 1;
    t.not(reasonOf(() => verifySnpReport(vsReport, { anchors, vcek: badVcek }, NOW)), 'ok', 'VCEK byte 40 altered');
    t.equal(reasonOf(() => verifySnpReport(vsReport, { anchors, vcek: gsgVcek }, NOW)), 'signature_invalid', "another chip's VCEK");
  });

  t.test('trustee Milan: VCEK report valid, byte 42 / 0x180 altered fail, VLEK at 2025-06-01', async (t) => {
    const c = verifySnpReport(trReport, { anchors, vcek: trVcek }, NOW);
    t.equal(c.guest_svn, 4);
    t.equal(c.policy.abi_minor, 31);
    t.equal(c.current_tcb.microcode, 206);
    t.equal(c.reported_tcb.microcode, 115);
    t.equal(c.family_id, '01' + '00'.repeat(15));
    t.match(c.id_key_digest, /^0356215882a82527/);
    for (const off of [42, 0x180]) {
      const bad = Buffer.from(trReport);
      bad[off] = (bad[off]! + 1) & 0xff;
      t.equal(reasonOf(() => verifySnpReport(bad, { anchors, vcek: trVcek }, NOW)), 'signature_invalid', `byte ${off}`);
    }
    const badVcek = Buffer.from(trVcek);
    badVcek[42] = (badVcek[42]! + 1) & 0xff;
    t.not(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: badVcek }, NOW)), 'ok', 'VCEK byte 42 altered');

    const vlekReport = read('trustee-milan/test-vlek-report.bin');
    const vlek = read('trustee-milan/test-vlek.der');
    const v = verifySnpReport(vlekReport, { anchors, vcek: vlek }, new Date('2025-06-01T00:00:00Z'));
    t.equal(v.signing_key, 'vlek');
    t.equal(v.version, 3);
    t.equal(v.vmpl, 1);
    t.same(v.cpuid, { family: 0x19, model: 0x01, stepping: 1 });
    t.equal(v.chip_id, '00'.repeat(64));
    t.same([v.reported_tcb.snp, v.reported_tcb.microcode, v.current_tcb.microcode, v.launch_tcb.microcode], [24, 217, 220, 219]);
    t.same(v.firmware.current, { major: 1, minor: 55, build: 29 });
    t.equal(v.cert.not_after, '2025-12-10T22:14:21.000Z');
    t.equal(reasonOf(() => verifySnpReport(vlekReport, { anchors, vcek: vlek }, NOW)), 'collateral_expired', 'VLEK expired now');
    t.equal(parseSnpEndorsementCert(vlek).cspId, 'CN=cc-us-east-2.amazonaws.com');
    t.equal(reasonOf(() => verifySnpReport(vlekReport, { anchors, vcek: trVcek }, NOW)), 'collateral_missing', 'VCEK for a VLEK report');
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: vlek }, NOW)), 'collateral_missing', 'VLEK for a VCEK report');
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors }, NOW)), 'collateral_missing', 'no certificate at all');
  });

  t.test('trustee invalid VCEKs: hwID parses in both encodings, signatures fail', async (t) => {
    const want = Buffer.from([...Array(64).keys()]);
    for (const f of ['test-vcek-invalid-legacy.der', 'test-vcek-invalid-new.der']) {
      const der = read(`trustee-milan/${f}`);
      const cert = parseSnpEndorsementCert(der);
      t.same(Buffer.from(cert.hwId!), want, `${f} hwID`);
      t.equal(cert.productName, 'Milan-B0');
      t.equal(reasonOf(() => verifyEndorsementChain(cert, anchors, 'Milan', NOW)), 'chain_invalid', `${f} chain`);
      t.equal(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: der }, NOW)), 'chain_invalid');
    }
  });

  t.test('Azure Genoa (v3) and Azure Milan (v2, PEM bundle) reports verify', async (t) => {
    const g = verifySnpReport(read('trustee-azure-genoa/derived/snp_report_genoa.bin'), { anchors, vcek: read('trustee-azure-genoa/vcek-genoa.pem').toString() }, NOW);
    t.equal(g.product, 'Genoa');
    t.equal(g.guest_svn, 65547);
    t.same(g.cpuid, { family: 0x19, model: 0x11, stepping: 1 });
    t.same(g.reported_tcb, { raw: '541700000000000a', bootloader: 10, tee: 0, snp: 23, microcode: 84 });
    t.equal(g.report_data, 'b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f' + '00'.repeat(32));
    t.match(g.chip_id, /^0506ffba875e939c/);
    t.same(g.firmware.current, { major: 1, minor: 55, build: 40 });
    t.equal(describeSnpReport(read('trustee-azure-genoa/derived/snp_report_genoa.bin')).product, 'Genoa');

    const m = verifySnpReport(readFileSync(path.join(tpmDir, 'derived/snp_report_milan.bin')), { anchors, vcek: readFileSync(path.join(tpmDir, 'vcek.pem'), 'utf8') }, NOW);
    t.equal(m.product, 'Milan');
    t.equal(m.guest_svn, 5);
    t.equal(m.measurement, '9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315');
    t.equal(m.report_data, 'b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac' + '00'.repeat(32));
  });

  t.test('cross-product and wrong-intermediate negatives', async (t) => {
    const genoaOnly = loadSnpAnchors([read('amd-roots/go-sev-guest/ask_ark_genoa.pem').toString()]);
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors: genoaOnly, vcek: trVcek }, NOW)), 'chain_invalid', 'Milan VCEK vs Genoa anchors');
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: trVcek, product: 'Genoa' }, NOW)), 'tcb_mismatch', 'pinned product');
    // ARK + ASVK only: a VCEK has no ASK to chain to.
    const asvkOnly = loadSnpAnchors([read('amd-roots/go-sev-guest/ask_ark_milan_vlek.pem').toString()]);
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors: asvkOnly, vcek: trVcek }, NOW)), 'chain_invalid', 'VCEK with ASVK only');
    // The ASVK placed in the ASK slot (mis-sorted anchors) is still refused.
    const m = anchors.products.Milan!;
    const swapped: SnpTrustAnchors = { products: { Milan: { ark: m.ark, ask: m.asvk! } } };
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors: swapped, vcek: trVcek }, NOW)), 'chain_invalid', 'VCEK under ASVK');
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: trVcek }, new Date('2031-01-01'))), 'collateral_expired');
    t.equal(reasonOf(() => verifySnpReport(trReport, { anchors, vcek: trVcek }, new Date('2020-01-01'))), 'collateral_expired');
  });

  t.test('virtee Turin VCEK chains to the Turin ASK/ARK', async (t) => {
    const turin = parseSnpEndorsementCert(read('virtee-sev/vcek_turin.der'));
    t.equal(turin.product, 'Turin');
    t.equal(turin.structVersion, 1);
    t.same(turin.tcb, { bootloader: 0, tee: 0, snp: 0, microcode: 9, fmc: 0 });
    t.equal(Buffer.from(turin.hwId!).toString('hex'), '1e550a8ee5cf9f4d');
    t.doesNotThrow(() => verifyEndorsementChain(turin, anchors, 'Turin', NOW));
    t.equal(reasonOf(() => verifyEndorsementChain(turin, anchors, 'Milan', NOW)), 'chain_invalid');
  });

  t.test('openssl verify agrees on the Milan and Turin chains', async (t) => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'snp-openssl-'));
    t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
    const pem = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;
    const cases: [string, Buffer, string, string][] = [
      ['milan', trVcek, 'milan', 'ok'],
      ['turin', read('virtee-sev/vcek_turin.der'), 'turin', 'ok'],
      ['milan-vs-genoa', trVcek, 'genoa', 'chain_invalid'],
    ];
    for (const [name, der, prod, ours] of cases) {
      const vcekFile = path.join(tmp, `${name}.pem`);
      writeFileSync(vcekFile, pem(der));
      const r = spawnSync('openssl', [
        'verify', '-CAfile', path.join(dir, `amd-roots/virtee-sev/${prod}_ark.pem`),
        '-untrusted', path.join(dir, `amd-roots/virtee-sev/${prod}_ask.pem`), '-attime', String(NOW.getTime() / 1000), vcekFile,
      ], { encoding: 'utf8' });
      t.equal(r.status === 0 ? 'ok' : 'fail', ours === 'ok' ? 'ok' : 'fail', `openssl ${name}: ${r.stdout}${r.stderr}`);
      const cert = parseSnpEndorsementCert(der);
      const product = prod === 'milan' ? 'Milan' : prod === 'genoa' ? 'Genoa' : 'Turin';
      t.equal(reasonOf(() => verifyEndorsementChain(cert, anchors, product, NOW)), ours, `ours ${name}`);
    }
  });
}
