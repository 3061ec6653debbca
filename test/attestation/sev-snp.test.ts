/**
 * SEV-SNP verifier against synthetic AMD material (test/helpers/snp-synthetic.ts): tampering of
 * every signed field, sizes and versions, TCB / chip mismatches per component, Turin and v5
 * layouts, VLEK, certificate tables. Real-sample tests: sev-snp-conformance.test.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { buildSnpCertTable, parseSnpCertTable, SNP_CERT_GUIDS } from '../../src/attestation/sev-snp/cert-table.js';
import { describeSnpReport } from '../../src/attestation/sev-snp/claims.js';
import { parseSnpReport, SNP_FIELDS } from '../../src/attestation/sev-snp/report.js';
import { verifySnpReport, type SnpVerifyRefs } from '../../src/attestation/sev-snp/verify.js';
import { conformance } from '../helpers/paths.js';
import { makeEndorsement, makeHierarchy, makeReport, resign, type SynthTcb } from '../helpers/snp-synthetic.js';
import { reasonOf } from '../helpers/attestation.js';

const NOW = new Date('2026-06-01T00:00:00Z');/** A flipped version field: unknown versions are unsupported; v3+ read as v2 has CPUID bytes in reserved space. */
const versionFlip = (from: number, to: number) =>
  ![2, 3, 5].includes(to) ? 'evidence_unsupported' : to === 2 && from >= 3 ? 'evidence_malformed' : 'signature_invalid';
const chip = Buffer.from(Buffer.alloc(64, 0).map((_, i) => (i * 7 + 3) & 0xff));
const MILAN_TCB: SynthTcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
const TURIN_TCB: SynthTcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 9 };

t.test('synthetic hierarchy', async (t) => {
  const milan = await makeHierarchy('Milan');
  const turin = await makeHierarchy('Turin');
  const anchors = loadSnpAnchors([milan.ask.pem + milan.ark.pem, milan.asvk.pem, turin.ark.pem, turin.ask.pem]);
  const vcek = await makeEndorsement(milan, { tcb: MILAN_TCB, hwId: chip });
  const refs: SnpVerifyRefs = { anchors, vcek: vcek.der };

  t.test('v2, v3 and v5 Milan reports verify', async (t) => {
    for (const version of [2, 3, 5] as const) {
      const r = makeReport({ version, product: 'Milan', tcb: MILAN_TCB, chipId: chip }, vcek.privateKey);
      const c = verifySnpReport(r, refs, NOW);
      t.equal(c.version, version);
      t.equal(c.product, 'Milan');
      t.equal(c.guest_svn, 7);
      t.equal(c.chip_id, chip.toString('hex'));
      t.same(c.reported_tcb, { raw: '7308000000000003', ...MILAN_TCB });
      t.equal(c.cpuid === undefined, version === 2, `cpuid present iff v3+ (v${version})`);
      t.equal(c.launch_mit_vector, version === 5 ? '0000000000000003' : undefined);
      t.equal(c.current_mit_vector, version === 5 ? '0000000000000007' : undefined);
      t.equal(c.platform_info.alias_check_complete, true);
      t.equal(c.cert.not_after, '2045-01-01T00:00:00.000Z');
    }
  });

  t.test('flipping a bit in each signed field is refused with the right reason', async (t) => {
    for (const version of [2, 3, 5] as const) {
      const good = makeReport({ version, product: 'Milan', tcb: MILAN_TCB, chipId: chip }, vcek.privateKey);
      for (const [field, [off, len]] of Object.entries(SNP_FIELDS)) {
        for (const [at, mask] of [[off, 0x01], [off + len - 1, 0x80]] as const) {
          const bad = Buffer.from(good);
          bad[at]! ^= mask;
          let want = 'signature_invalid';
          if (field === 'version') want = versionFlip(version, bad.readUInt32LE(0));
          if (field === 'signature_algo') want = 'evidence_unsupported';
          if (field === 'flags' && mask === 0x80) want = 'evidence_malformed'; // reserved bits
          if (field === 'cpuid' && version === 2) want = 'evidence_malformed'; // reserved in v2
          if (field.endsWith('mit_vector') && version !== 5) want = 'evidence_malformed'; // reserved before v5
          t.equal(reasonOf(() => verifySnpReport(bad, refs, NOW)), want, `v${version} ${field} byte 0x${at.toString(16)} ^ 0x${mask.toString(16)}`);
        }
      }
      for (const [name, at, want] of [
        ['signature R', 0x2a0, 'signature_invalid'],
        ['signature S', 0x2a0 + 72 + 47, 'signature_invalid'],
        ['R upper bytes', 0x2a0 + 60, 'evidence_malformed'],
        ['signature reserved tail', 0x400, 'evidence_malformed'],
        ['reserved 0x4C', 0x4c, 'evidence_malformed'],
        ['reserved 0x1EB', 0x1eb, 'evidence_malformed'],
        ['reserved 0x290', 0x290, 'evidence_malformed'],
      ] as const) {
        const bad = Buffer.from(good);
        bad[at]! ^= 0x10;
        t.equal(reasonOf(() => verifySnpReport(bad, refs, NOW)), want, `v${version} ${name}`);
      }
    }
  });

  t.test('sizes, versions, signing key and algorithm', async (t) => {
    const good = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, vcek.privateKey);
    t.equal(reasonOf(() => parseSnpReport(good.subarray(0, 1183))), 'evidence_malformed');
    t.match(reasonOf(() => parseSnpReport(Buffer.alloc(0))), 'evidence_malformed');
    t.throws(() => parseSnpReport(Buffer.concat([good, Buffer.alloc(1)])), /exactly 1184 bytes, got 1185/);
    for (const v of [0, 1, 4, 6, 0xffffffff]) {
      const b = Buffer.from(good);
      b.writeUInt32LE(v, 0);
      t.equal(reasonOf(() => verifySnpReport(resign(b, vcek.privateKey), refs, NOW)), 'evidence_unsupported', `version ${v}`);
    }
    const unsigned = Buffer.from(good);
    unsigned.writeUInt32LE(7 << 2, 0x48);
    t.equal(reasonOf(() => parseSnpReport(unsigned)), 'evidence_unsupported', 'SIGNING_KEY none');
    const reserved = Buffer.from(good);
    reserved.writeUInt32LE(3 << 2, 0x48);
    t.equal(reasonOf(() => parseSnpReport(reserved)), 'evidence_malformed', 'SIGNING_KEY 3');
    const asVlek = Buffer.from(good);
    asVlek.writeUInt32LE(1 << 2, 0x48);
    t.equal(reasonOf(() => verifySnpReport(resign(asVlek, vcek.privateKey), refs, NOW)), 'collateral_missing', 'VLEK report, VCEK given');
    const describe = describeSnpReport(good);
    t.equal(describe.product, 'Milan');
    t.equal(describe.verified, false);
  });

  t.test('a VCEK of another TCB or chip: tcb_mismatch naming the component', async (t) => {
    for (const c of ['bootloader', 'tee', 'snp', 'microcode'] as const) {
      const other = await makeEndorsement(milan, { tcb: { ...MILAN_TCB, [c]: MILAN_TCB[c] + 1 }, hwId: chip });
      const r = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, other.privateKey);
      t.throws(() => verifySnpReport(r, { anchors, vcek: other.der }, NOW), { reason: 'tcb_mismatch', message: new RegExp(`reported_tcb ${c} `) } as never, c);
    }
    const otherChip = await makeEndorsement(milan, { tcb: MILAN_TCB, hwId: Buffer.alloc(64, 0xee) });
    const r = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, otherChip.privateKey);
    t.throws(() => verifySnpReport(r, { anchors, vcek: otherChip.der }, NOW), { reason: 'tcb_mismatch', message: /chip_id/ } as never);
    // The report's CPUID says Genoa but the VCEK is a Milan one.
    const genoaCpu = makeReport({ product: 'Genoa', tcb: MILAN_TCB, chipId: chip }, vcek.privateKey);
    t.throws(() => verifySnpReport(genoaCpu, refs, NOW), { reason: 'tcb_mismatch', message: /product/ } as never);
  });

  t.test('Turin: its TCB layout, 8-byte hwID and fmc', async (t) => {
    const tv = await makeEndorsement(turin, { tcb: TURIN_TCB, hwId: chip.subarray(0, 8) });
    const r = makeReport({ version: 5, product: 'Turin', tcb: TURIN_TCB, chipId: chip }, tv.privateKey);
    const c = verifySnpReport(r, { anchors, vcek: tv.der }, NOW);
    t.equal(c.product, 'Turin');
    t.same(c.reported_tcb, { raw: '0900000004030201', ...TURIN_TCB });
    t.same(c.cpuid, { family: 0x1a, model: 0x02, stepping: 0 });
    const fmcOff = await makeEndorsement(turin, { tcb: { ...TURIN_TCB, fmc: 2 }, hwId: chip.subarray(0, 8) });
    const r2 = makeReport({ version: 3, product: 'Turin', tcb: TURIN_TCB, chipId: chip }, fmcOff.privateKey);
    t.throws(() => verifySnpReport(r2, { anchors, vcek: fmcOff.der }, NOW), { reason: 'tcb_mismatch', message: /fmc/ } as never);
    t.equal(reasonOf(() => verifySnpReport(r, { anchors, vcek: tv.der, product: 'Milan' }, NOW)), 'tcb_mismatch');
  });

  t.test('VLEK: chains via the ASVK only', async (t) => {
    const vlek = await makeEndorsement(milan, { kind: 'vlek', tcb: MILAN_TCB });
    const r = makeReport({ product: 'Milan', tcb: MILAN_TCB, signingKey: 'vlek' }, vlek.privateKey);
    t.equal(verifySnpReport(r, { anchors, vcek: vlek.pem }, NOW).signing_key, 'vlek');
    const vcekUnderAsvk = await makeEndorsement(milan, { tcb: MILAN_TCB, hwId: chip, issuer: milan.asvk });
    const r2 = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, vcekUnderAsvk.privateKey);
    t.equal(reasonOf(() => verifySnpReport(r2, { anchors, vcek: vcekUnderAsvk.der }, NOW)), 'chain_invalid', 'VCEK under ASVK');
    const vlekUnderAsk = await makeEndorsement(milan, { kind: 'vlek', tcb: MILAN_TCB, issuer: milan.ask });
    const r3 = makeReport({ product: 'Milan', tcb: MILAN_TCB, signingKey: 'vlek' }, vlekUnderAsk.privateKey);
    t.equal(reasonOf(() => verifySnpReport(r3, { anchors, vcek: vlekUnderAsk.der }, NOW)), 'chain_invalid', 'VLEK under ASK');
  });

  t.test('wrong chain and validity', async (t) => {
    const stranger = await makeHierarchy('Milan');
    const foreign = await makeEndorsement(stranger, { tcb: MILAN_TCB, hwId: chip });
    const r = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, foreign.privateKey);
    t.equal(reasonOf(() => verifySnpReport(r, { anchors, vcek: foreign.der }, NOW)), 'chain_invalid', 'same names, other ARK');
    t.equal(reasonOf(() => loadSnpAnchors([milan.ark.pem, stranger.ask.pem])), 'config_invalid', 'ASK of another ARK');
    const expired = await makeEndorsement(milan, { tcb: MILAN_TCB, hwId: chip, notAfter: new Date('2026-01-01') });
    const r2 = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, expired.privateKey);
    t.equal(reasonOf(() => verifySnpReport(r2, { anchors, vcek: expired.der }, NOW)), 'collateral_expired');
    t.equal(reasonOf(() => verifySnpReport(r2, { anchors, vcek: Buffer.from('junk') }, NOW)), 'evidence_malformed');
  });

  t.test('certificate table (extended report / auxblob)', async (t) => {
    const r = makeReport({ product: 'Milan', tcb: MILAN_TCB, chipId: chip }, vcek.privateKey);
    const table = buildSnpCertTable([
      { guid: SNP_CERT_GUIDS.ark, data: milan.ark.der },
      { guid: SNP_CERT_GUIDS.ask, data: milan.ask.der },
      { guid: SNP_CERT_GUIDS.vcek, data: vcek.der },
    ]);
    const entries = parseSnpCertTable(table);
    t.same(entries.map((e) => e.kind), ['ark', 'ask', 'vcek']);
    t.equal(verifySnpReport(r, { anchors, certTable: table }, NOW).signing_key, 'vcek');
    // EFI mixed-endian GUID bytes are recognised too.
    const efi = Buffer.from(table);
    const g = efi.subarray(48, 64);
    g.set([g[3]!, g[2]!, g[1]!, g[0]!, g[5]!, g[4]!, g[7]!, g[6]!], 0);
    t.equal(parseSnpCertTable(efi)[2]!.kind, 'vcek');
    t.equal(reasonOf(() => verifySnpReport(r, { anchors, certTable: table.subarray(0, 72) }, NOW)), 'evidence_malformed', 'entries point past the end');
    const noTerm = Buffer.from(table.subarray(0, 72));
    t.equal(reasonOf(() => parseSnpCertTable(noTerm)), 'evidence_malformed', 'no terminator');
    const onlyAsk = buildSnpCertTable([{ guid: SNP_CERT_GUIDS.ask, data: milan.ask.der }]);
    t.equal(reasonOf(() => verifySnpReport(r, { anchors, certTable: onlyAsk }, NOW)), 'collateral_missing');
    t.same(parseSnpCertTable(new Uint8Array(0)), []);
    const dup = buildSnpCertTable([{ guid: SNP_CERT_GUIDS.vcek, data: vcek.der }, { guid: SNP_CERT_GUIDS.vcek, data: vcek.der }]);
    t.equal(reasonOf(() => parseSnpCertTable(dup)), 'evidence_malformed', 'duplicate entries');
  });
});

t.test('real reports: a bit flipped in each signed field', async (t) => {
  const found = conformance('sev-snp');
  if ('skip' in found) return void t.skip(found.skip, async () => {});
  const dir = found.dir;
  const anchors = loadSnpAnchors(['ask_ark_milan.pem', 'ask_ark_milan_vlek.pem', 'ask_ark_genoa.pem'].map((f) => readFileSync(path.join(dir, 'amd-roots/go-sev-guest', f), 'utf8')));
  const samples: [string, string, Date][] = [
    ['trustee-milan/test-report.bin', 'trustee-milan/test-vcek.der', NOW],
    ['trustee-milan/test-vlek-report.bin', 'trustee-milan/test-vlek.der', new Date('2025-06-01T00:00:00Z')],
    ['trustee-azure-genoa/derived/snp_report_genoa.bin', 'trustee-azure-genoa/vcek-genoa.pem', NOW],
  ];
  for (const [reportFile, certFile, when] of samples) {
    const report = readFileSync(path.join(dir, reportFile));
    const refs = { anchors, vcek: readFileSync(path.join(dir, certFile)) };
    t.equal(reasonOf(() => verifySnpReport(report, refs, when)), 'ok', `${reportFile} verifies untouched`);
    const version = report.readUInt32LE(0);
    for (const [field, [off]] of Object.entries(SNP_FIELDS)) {
      if (field.endsWith('mit_vector') && version < 5) continue;
      const bad = Buffer.from(report);
      bad[off]! ^= 0x01;
      let want = 'signature_invalid';
      if (field === 'version') want = versionFlip(version, bad.readUInt32LE(0));
      if (field === 'signature_algo') want = 'evidence_unsupported';
      if (field === 'cpuid' && version === 2) want = 'evidence_malformed';
      t.equal(reasonOf(() => verifySnpReport(bad, refs, when)), want, `${reportFile} ${field}`);
    }
  }
});
