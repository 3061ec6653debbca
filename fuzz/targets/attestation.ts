/**
 * Attestation parsers: SEV-SNP reports, certificate tables and endorsement certificates, TPM
 * structures, the Azure HCL report, the sim report and the evidence envelope. The `-resigned`
 * targets re-sign each mutated body with the synthetic key that signed the seed, so the checks
 * after the signature (TCB, chip id, PCR digest, clock, policy bits) see mutated values too.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { bindingUserData } from '../../src/attestation/binding.js';
import { decodeEvidence, encodeEvidence } from '../../src/attestation/envelope.js';
import { allKinds, type VerifierTrust } from '../../src/attestation/kinds.js';
import { verifyEvidence } from '../../src/attestation/verifier.js';
import { parseHclReport } from '../../src/attestation/az-snp-vtpm/hcl.js';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { buildSnpCertTable, parseSnpCertTable, SNP_CERT_GUIDS } from '../../src/attestation/sev-snp/cert-table.js';
import { parseSnpEndorsementCert } from '../../src/attestation/sev-snp/certs.js';
import { parseSnpReport } from '../../src/attestation/sev-snp/report.js';
import { verifySnpReport } from '../../src/attestation/sev-snp/verify.js';
import { describeSimReport, generateSimKey, signSimReport, verifySimReport } from '../../src/attestation/sim/report.js';
import { TpmWriter } from '../../src/attestation/tpm/bytes.js';
import { TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE } from '../../src/attestation/tpm/constants.js';
import { decodePcrs, encodePcrs } from '../../src/attestation/tpm/evidence.js';
import { akTemplate, parseTpmtPublic, tpmName } from '../../src/attestation/tpm/public.js';
import { parseTpmsAttest, parseTpmtSignature, writePcrSelection } from '../../src/attestation/tpm/structures.js';
import { verifyTpmQuote } from '../../src/attestation/tpm/verify.js';
import { makeEndorsement, makeHierarchy, makeReport, resign, type SynthTcb } from '../../test/helpers/snp-synthetic.js';
import type { FuzzTarget } from '../target.js';
import { conformanceFiles, once, utf8 } from '../seeds.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const TCB: SynthTcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
const CHIP = Buffer.alloc(64, 0x42);
const SNP_REPORT_SIZE = 0x4a0;
/** Report fields worth hitting with interesting integers: version, policy, TCBs, signing key, CPUID, ids. */
const SNP_OFFSETS = [0x00, 0x04, 0x08, 0x30, 0x34, 0x38, 0x40, 0x48, 0x4c, 0x180, 0x188, 0x1e0, 0x1e8, 0x1ec, 0x1f0, 0x1f8, 0x200, 0x2a0];

const snpMaterial = once(async () => {
  const h = await makeHierarchy('Milan');
  const vcek = await makeEndorsement(h, { tcb: TCB, hwId: CHIP });
  const anchors = loadSnpAnchors([h.ask.pem + h.ark.pem]);
  const report = makeReport({ product: 'Milan', tcb: TCB, chipId: CHIP }, vcek.privateKey);
  const v5 = makeReport({ product: 'Milan', tcb: TCB, chipId: CHIP, version: 5 }, vcek.privateKey);
  return { h, vcek, anchors, report, v5 };
});

const REAL_REPORTS = [
  'sev-snp/trustee-milan/test-report.bin',
  'sev-snp/trustee-milan/test-vlek-report.bin',
  'sev-snp/go-sev-guest-milan/attestation.bin',
  'sev-snp/virtee-sev/report_milan.hex',
  'sev-snp/trustee-azure-genoa/derived/snp_report_genoa.bin',
  'tpm/trustee-azure-snp-vtpm-milan/derived/snp_report_milan.bin',
];
const REAL_CERTS = [
  'sev-snp/virtee-sev/vcek_milan.der',
  'sev-snp/virtee-sev/vcek_turin.der',
  'sev-snp/trustee-milan/test-vcek.der',
  'sev-snp/trustee-milan/test-vlek.der',
  'sev-snp/trustee-milan/test-vcek-invalid-new.der',
  'sev-snp/trustee-milan/test-vcek-invalid-legacy.der',
  'sev-snp/go-sev-guest-milan/vcek.testcer',
  'sev-snp/trustee-azure-genoa/vcek-genoa.pem',
];
const REAL_HCL = ['tpm/trustee-azure-snp-vtpm-milan/hcl-report.bin', 'sev-snp/trustee-azure-genoa/derived/hcl_report.bin'];
const REAL_ATTEST = [
  'tpm/go-attestation-gcp-windows/derived/quote_tpms_attest.bin',
  'tpm/trustee-azure-snp-vtpm-milan/derived/tpm_quote_tpms_attest.bin',
  'sev-snp/trustee-azure-genoa/derived/tpm_quote_tpms_attest.bin',
];

const guidBytes = (g: string) => Buffer.from(g.replace(/-/g, ''), 'hex');

/** A TPMS_ATTEST quote over sha256 PCRs 0-7 (values below), with `nonce` as extraData. */
const PCRS = Array.from({ length: 8 }, (_, i) => createHash('sha256').update(`pcr${i}`).digest('hex'));
function quoteAttest(nonce: Uint8Array): Buffer {
  const w = new TpmWriter();
  w.u32(TPM_GENERATED_VALUE).u16(TPM_ST_ATTEST_QUOTE).tpm2b(Buffer.alloc(34, 1)).tpm2b(nonce);
  w.u64(1000n).u32(3).u32(0).u8(1).u64(0x20200312n);
  writePcrSelection(w, [{ alg: 'sha256', indices: PCRS.map((_, i) => i) }]);
  w.tpm2b(createHash('sha256').update(Buffer.concat(PCRS.map((p) => Buffer.from(p, 'hex')))).digest());
  return w.finish();
}
/** TPMS_ATTEST: magic, type, qualifiedSigner size, extraData size (after a 34-byte signer), clock info. */
const ATTEST_OFFSETS = [0, 4, 6, 42, 44, 60, 68, 72, 76, 77, 85, 87, 89];
const simKey = once(async () => generateSimKey());
const tpmKey = once(async () => generateKeyPairSync('rsa', { modulusLength: 2048 }));

export const ATTESTATION_TARGETS: FuzzTarget[] = [
  {
    name: 'sev-snp-report',
    about: 'SEV-SNP attestation report (parseSnpReport)',
    hints: { offsets: SNP_OFFSETS, maxBytes: 4096 },
    async prepare() {
      const m = await snpMaterial();
      return { seeds: [m.report, m.v5, ...conformanceFiles(...REAL_REPORTS)], run: (b) => parseSnpReport(b) };
    },
  },
  {
    name: 'sev-snp-verify-resigned',
    about: 'SEV-SNP report verification with every mutated report re-signed by the synthetic VCEK',
    hints: { offsets: SNP_OFFSETS, maxBytes: 4096 },
    async prepare() {
      const m = await snpMaterial();
      return {
        seeds: [m.report, m.v5],
        run: (b) => {
          const report = b.length === SNP_REPORT_SIZE ? resign(Buffer.from(b), m.vcek.privateKey) : b;
          return verifySnpReport(report, { anchors: m.anchors, vcek: m.vcek.der }, NOW);
        },
      };
    },
  },
  {
    name: 'sev-snp-cert-table',
    about: 'SEV-SNP extended-report certificate table, then each certificate found in it',
    hints: { offsets: [0, 16, 20, 24, 40, 44, 48, 64, 68, 72], lengthFields: [{ at: 20, width: 4, endian: 'le' }, { at: 44, width: 4, endian: 'le' }, { at: 16, width: 4, endian: 'le' }], maxBytes: 16384 },
    async prepare() {
      const m = await snpMaterial();
      const table = buildSnpCertTable([
        { guid: SNP_CERT_GUIDS.vcek, data: m.vcek.der },
        { guid: SNP_CERT_GUIDS.ask, data: m.h.ask.der },
        { guid: SNP_CERT_GUIDS.ark, data: m.h.ark.der },
      ]);
      const unknown = buildSnpCertTable([{ guid: '00112233-4455-6677-8899-aabbccddeeff', data: guidBytes(SNP_CERT_GUIDS.vlek) }]);
      return {
        seeds: [table, unknown],
        run: (b) => {
          for (const e of parseSnpCertTable(b)) if (e.kind === 'vcek' || e.kind === 'vlek') parseSnpEndorsementCert(e.data);
          return verifySnpReport(m.report, { anchors: m.anchors, certTable: b }, NOW);
        },
      };
    },
  },
  {
    name: 'sev-snp-endorsement-cert',
    about: 'VCEK/VLEK (and ASK/ARK bytes) as endorsement certificates: DER or PEM',
    hints: { maxBytes: 8192, dictionary: ['-----BEGIN CERTIFICATE-----\n', '-----END CERTIFICATE-----\n', '\u0000', '\x30\x82', '\x02\x01'] },
    async prepare() {
      const m = await snpMaterial();
      return {
        seeds: [m.vcek.der, Buffer.from(m.vcek.pem), m.h.ask.der, ...conformanceFiles(...REAL_CERTS)],
        run: (b) => parseSnpEndorsementCert(b),
      };
    },
  },
  {
    name: 'tpm-attest',
    about: 'TPMS_ATTEST (parseTpmsAttest)',
    hints: { offsets: ATTEST_OFFSETS, lengthFields: [{ at: 6, width: 2, endian: 'be' }, { at: 42, width: 2, endian: 'be' }], maxBytes: 2048 },
    async prepare() {
      return { seeds: [quoteAttest(Buffer.from('nonce')), ...conformanceFiles(...REAL_ATTEST)], run: (b) => parseTpmsAttest(b) };
    },
  },
  {
    name: 'tpm-quote-resigned',
    about: 'TPM quote verification with every mutated TPMS_ATTEST re-signed by a synthetic RSA AK',
    hints: { offsets: ATTEST_OFFSETS, lengthFields: [{ at: 6, width: 2, endian: 'be' }, { at: 42, width: 2, endian: 'be' }], maxBytes: 2048 },
    async prepare() {
      const ak = await tpmKey();
      const nonce = Buffer.alloc(32, 7);
      return {
        seeds: [quoteAttest(nonce)],
        run: (attest) =>
          verifyTpmQuote(
            {
              attest,
              signature: sign('sha256', attest, ak.privateKey),
              signatureScheme: { sigAlg: 'rsassa', hashAlg: 'sha256' },
              pcrs: { alg: 'sha256', values: Object.fromEntries(PCRS.map((p, i) => [i, p])) },
              ak: ak.publicKey,
            },
            { akTrust: { keys: [ak.publicKey] }, expectedExtraData: nonce, previous: { ak_spki_sha256: '', clock: 0n, reset_count: 0, restart_count: 0 } },
            NOW,
          ),
      };
    },
  },
  {
    name: 'tpm-public',
    about: 'TPMT_PUBLIC (parseTpmtPublic)',
    hints: { offsets: [0, 2, 4, 8, 10, 12, 14, 16, 18, 20], lengthFields: [{ at: 8, width: 2, endian: 'be' }], maxBytes: 2048 },
    async prepare() {
      return {
        seeds: [akTemplate('ecc-p256'), akTemplate('rsa-2048'), ...conformanceFiles('tpm/go-attestation-gcp-windows/derived/ak_tpmt_public.bin')],
        run: (b) => parseTpmtPublic(b),
      };
    },
  },
  {
    name: 'tpm-signature',
    about: 'TPMT_SIGNATURE (parseTpmtSignature)',
    hints: { offsets: [0, 2, 4, 6], lengthFields: [{ at: 4, width: 2, endian: 'be' }], maxBytes: 2048 },
    async prepare() {
      const rsa = new TpmWriter().u16(0x0014).u16(0x000b).tpm2b(Buffer.alloc(256, 3)).finish();
      const ecc = new TpmWriter().u16(0x0018).u16(0x000b).tpm2b(Buffer.alloc(32, 1)).tpm2b(Buffer.alloc(32, 2)).finish();
      return {
        seeds: [rsa, ecc, ...conformanceFiles('tpm/go-attestation-gcp-windows/derived/quote_tpmt_signature.bin')],
        run: (b) => parseTpmtSignature(b),
      };
    },
  },
  {
    name: 'tpm-pcrs',
    about: 'the pcrs JSON part of TPM evidence (decodePcrs)',
    hints: { dictionary: ['"alg"', '"sha1"', '"sha256"', '"values"', '"0"', '"24"', '-1', '1e999', '"__proto__"', '{', '}', '[', ']', ',', ':', 'null'], maxBytes: 8192 },
    async prepare() {
      return {
        seeds: [encodePcrs({ alg: 'sha256', values: Object.fromEntries(PCRS.map((p, i) => [i, p])) }), ...conformanceFiles('tpm/go-attestation-gcp-windows/derived/pcrs_sha1.json')],
        run: (b) => decodePcrs(b),
      };
    },
  },
  {
    name: 'az-hcl-report',
    about: 'Azure vTPM HCL report and its runtime JSON (parseHclReport)',
    hints: { offsets: [0, 4, 8, 12, 32, 1216, 1220, 1224, 1228, 1232], lengthFields: [{ at: 8, width: 4, endian: 'le' }, { at: 1216, width: 4, endian: 'le' }, { at: 1232, width: 4, endian: 'le' }], maxBytes: 8192 },
    async prepare() {
      return { seeds: conformanceFiles(...REAL_HCL), run: (b) => parseHclReport(b) };
    },
  },
  {
    name: 'sim-report',
    about: 'sim TEE report: decode, then verify against an unrelated key (signature path)',
    hints: { offsets: [0, 4, 6, 8, 16, 24], maxBytes: 1024 },
    async prepare() {
      const key = await simKey();
      const seed = signSimReport({ measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 5n, chipId: Buffer.alloc(64, 2), reportData: Buffer.alloc(64, 3), issuedAtMs: NOW.getTime() }, key.privateKey);
      return {
        seeds: [seed],
        run: (b) => {
          describeSimReport(b);
          return verifySimReport(b, { keys: [key.publicKey] }, NOW);
        },
      };
    },
  },
  {
    name: 'sim-verify-resigned',
    about: 'sim report verification with every mutated body re-signed by the trusted sim key',
    hints: { offsets: [0, 4, 6, 8, 16, 24], maxBytes: 1024 },
    async prepare() {
      const key = await simKey();
      const seed = signSimReport({ measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: true, tcb: 5n, chipId: Buffer.alloc(64, 2), reportData: Buffer.alloc(64, 3), issuedAtMs: NOW.getTime() - 1000 }, key.privateKey);
      return {
        seeds: [seed],
        run: (b) => {
          const body = Buffer.from(b);
          if (body.length === 336) body.set(sign('sha256', body.subarray(0, 272), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }), 272);
          return verifySimReport(body, { keys: [key.publicKey] }, NOW);
        },
      };
    },
  },
  {
    name: 'evidence-envelope',
    about: 'the attest-evidence header value from peers (decodeEvidence)',
    hints: {
      maxBytes: 16 * 1024,
      dictionary: ['"__cmwc_t"', '"type"', '"report"', '"vcek"', '"cert_table"', '"attest"', '"signature"', '"pcrs"', '"ak"', '["text/plain",', '"__proto__"', '"constructor"', '==', '=', '+', '/', '_', '-', '\\u0000', '{', '}', '[', ']'],
    },
    async prepare() {
      const m = await snpMaterial();
      const key = await simKey();
      const sim = signSimReport({ measurement: Buffer.alloc(48), guestSvn: 0, debug: false, tcb: 0n, chipId: Buffer.alloc(64), reportData: Buffer.alloc(64), issuedAtMs: NOW.getTime() }, key.privateKey);
      const envelopes = [
        encodeEvidence({ type: 'sim', parts: { report: sim } }),
        encodeEvidence({ type: 'sev-snp', parts: { report: m.report, vcek: m.vcek.der } }),
        encodeEvidence({ type: 'tpm', parts: { attest: quoteAttest(Buffer.alloc(32)), signature: Buffer.alloc(8), pcrs: encodePcrs({ alg: 'sha256', values: { 0: PCRS[0]! } }), ak: akTemplate('ecc-p256') } }),
      ];
      // The header value itself, and the JSON inside it (mutated JSON is re-wrapped in base64url).
      const json = envelopes.map((e) => Buffer.from(e, 'base64url'));
      return {
        seeds: [...envelopes.map(utf8), ...json.map((j) => Buffer.concat([Buffer.from([0]), j]))],
        run: (b) => {
          const header = b[0] === 0 ? Buffer.from(b.subarray(1)).toString('base64url') : Buffer.from(b).toString('latin1');
          return decodeEvidence(header);
        },
      };
    },
  },
];

ATTESTATION_TARGETS.push({
  name: 'evidence-verify',
  about: 'a peer\'s evidence end to end: envelope JSON (re-encoded) -> verifier dispatch -> binding to the connection',
  hints: { maxBytes: 16 * 1024, dictionary: ['"__cmwc_t"', '"type"', '"report"', '"vcek"', '"sim"', '"sev-snp"', '"tpm"', '"tdx"', '"sgx"', '"az-snp-vtpm"', '{', '}', '[', ']', ','] },
  async prepare() {
    const m = await snpMaterial();
    const key = await simKey();
    const ak = await tpmKey();
    const spki = Buffer.from('fuzz-connection-spki');
    const reportData = bindingUserData(spki);
    const sim = signSimReport({ measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 5n, chipId: Buffer.alloc(64, 2), reportData, issuedAtMs: NOW.getTime() - 1000 }, key.privateKey);
    const snp = makeReport({ product: 'Milan', tcb: TCB, chipId: CHIP, reportData }, m.vcek.privateKey);
    const attest = quoteAttest(bindingUserData(spki, undefined, 32));
    const envelopes = [
      encodeEvidence({ type: 'sim', parts: { report: sim } }),
      encodeEvidence({ type: 'sev-snp', parts: { report: snp, vcek: m.vcek.der } }),
      encodeEvidence({
        type: 'tpm',
        parts: {
          attest,
          signature: Buffer.concat([Buffer.from([0x00, 0x14, 0x00, 0x0b, 0x01, 0x00]), sign('sha256', attest, ak.privateKey)]),
          pcrs: encodePcrs({ alg: 'sha256', values: Object.fromEntries(PCRS.map((p, i) => [i, p])) }),
          ak: akTemplate('rsa-2048'),
        },
      }),
    ];
    const trust: VerifierTrust = { simKeys: [key.publicKey], snpAnchors: m.anchors, tpm: { names: [tpmName('sha256', akTemplate('rsa-2048'))] } };
    return {
      seeds: envelopes.map((e) => Buffer.from(e, 'base64url')),
      run: (json) => verifyEvidence(decodeEvidence(Buffer.from(json).toString('base64url')), trust, { spki }, NOW),
    };
  },
});

ATTESTATION_TARGETS.push({
  name: 'evidence-kinds-inspect',
  about: "what inspect-evidence does with a raw file: every kind's sniff, then the sniffed kind's describe",
  hints: { maxBytes: 8192 },
  async prepare() {
    const key = await simKey();
    const sim = signSimReport({ measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 5n, chipId: Buffer.alloc(64, 2), reportData: Buffer.alloc(64, 3), issuedAtMs: NOW.getTime() }, key.privateKey);
    const m = await snpMaterial();
    return {
      seeds: [sim, m.report, quoteAttest(Buffer.alloc(32, 4)), ...conformanceFiles(...REAL_REPORTS, ...REAL_HCL)],
      run: (b) => {
        const bytes = Buffer.from(b);
        // A sniff only looks at sizes and magic: it never throws, whatever the bytes.
        const claimed = allKinds().filter((k) => k.sniff?.(bytes));
        return claimed[0]?.describe?.(bytes);
      },
    };
  },
});
