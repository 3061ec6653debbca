/**
 * Pure TPM structure and verifier tests with software keys (no TPM): schemes a simulator
 * AK does not produce (RSAPSS, ECDSA P-384/SHA-384), malformed input naming field and
 * offset, response-code decoding, and AK certificates checked against a CA made with the
 * openssl CLI.
 */
import t from 'tap';
import { createHash, generateKeyPairSync, sign, constants, X509Certificate, type KeyObject } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AttestationError } from '../../src/attestation/types.js';
import { TpmReader, TpmWriter } from '../../src/attestation/tpm/bytes.js';
import { describeRc } from '../../src/attestation/tpm/rc.js';
import { AK_ATTRIBUTES, akTemplate, parseTpmtPublic } from '../../src/attestation/tpm/public.js';
import { TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT } from '../../src/attestation/tpm/constants.js';
import { encodeTpmtSignature, parseTpmsAttest, parseTpmtSignature, writePcrSelection } from '../../src/attestation/tpm/structures.js';
import { describeTpmQuote, verifyTpmQuote, type TpmQuoteInput } from '../../src/attestation/tpm/verify.js';

const NOW = new Date();
const reasonOf = (fn: () => unknown): string => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof AttestationError) return `${err.reason}: ${err.message}`;
    throw err;
  }
};

const PCRS: Record<number, string> = { 0: '11'.repeat(48), 7: '22'.repeat(48), 9: '33'.repeat(48) };

/** A TPMS_ATTEST quote over the PCRS (SHA-384 bank), digest with `hash`. */
function makeAttest(hash: 'sha256' | 'sha384', extraData = Buffer.from('nonce')): Buffer {
  const w = new TpmWriter();
  w.u32(0xff544347).u16(0x8018).tpm2b(Buffer.from('000b' + 'aa'.repeat(32), 'hex')).tpm2b(extraData);
  w.u64(123456789n).u32(7).u32(2).u8(1).u64(0x0102030405060708n);
  writePcrSelection(w, [{ alg: 'sha384', indices: [0, 7, 9] }]);
  const h = createHash(hash);
  for (const i of [0, 7, 9]) h.update(Buffer.from(PCRS[i]!, 'hex'));
  w.tpm2b(h.digest());
  return w.finish();
}

t.test('software-signed quotes: RSAPSS/SHA-256 and ECDSA P-384/SHA-384', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const attestRsa = makeAttest('sha256');
  const pss = sign('sha256', attestRsa, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  const sigRsa = encodeTpmtSignature({ sigAlg: 'rsapss', hash: 'sha256', sig: pss });
  const base = (attest: Buffer, signature: Buffer, ak: KeyObject): TpmQuoteInput => ({ attest, signature, ak, pcrs: { alg: 'sha384', values: PCRS } });
  const claims = verifyTpmQuote(base(attestRsa, sigRsa, rsa.publicKey), { akTrust: { keys: [rsa.publicKey] } }, NOW);
  t.same(claims.signature_scheme, { sig_alg: 'rsapss', hash_alg: 'sha256' });
  t.same(claims.clock, { clock: '123456789', reset_count: 7, restart_count: 2, safe: true });
  t.equal(claims.firmware_version, '0102030405060708');
  t.same(Object.keys(claims.pcrs), ['0', '7', '9']);
  t.equal(parseTpmtSignature(sigRsa).sigAlg, 'rsapss');
  // The same bytes declared as RSASSA do not verify.
  t.match(reasonOf(() => verifyTpmQuote({ ...base(attestRsa, pss, rsa.publicKey), signatureScheme: { sigAlg: 'rsassa', hashAlg: 'sha256' } }, { akTrust: { keys: [rsa.publicKey] } }, NOW)), /^signature_invalid/);

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const attestEc = makeAttest('sha384');
  const rs = sign('sha384', attestEc, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  const sigEc = encodeTpmtSignature({ sigAlg: 'ecdsa', hash: 'sha384', r: rs.subarray(0, 48), s: rs.subarray(48) });
  t.equal(verifyTpmQuote(base(attestEc, sigEc, ec.publicKey), { akTrust: { keys: [ec.publicKey] } }, NOW).pcr_digest.length, 96);
  const raw = { ...base(attestEc, rs, ec.publicKey), signatureScheme: { sigAlg: 'ecdsa' as const, hashAlg: 'sha384' as const } };
  t.equal(reasonOf(() => verifyTpmQuote(raw, { akTrust: { keys: [ec.publicKey] } }, NOW)), 'ok', 'raw r||s ECDSA');
  // A digest computed with a hash other than the signing hash is a PCR mismatch.
  const wrongDigest = makeAttest('sha256');
  const rs2 = sign('sha384', wrongDigest, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  const sig2 = encodeTpmtSignature({ sigAlg: 'ecdsa', hash: 'sha384', r: rs2.subarray(0, 48), s: rs2.subarray(48) });
  t.match(reasonOf(() => verifyTpmQuote(base(wrongDigest, sig2, ec.publicKey), { akTrust: { keys: [ec.publicKey] } }, NOW)), /^pcr_mismatch/);
  t.equal(describeTpmQuote(attestEc).pcr_selection[0]!.bank, 'sha384');
});

t.test('malformed structures name the field and offset', async (t) => {
  const good = makeAttest('sha256');
  const at = (mutate: (b: Buffer) => Buffer) => reasonOf(() => parseTpmsAttest(mutate(Buffer.from(good))));
  t.match(at((b) => b.subarray(0, 3)), /^evidence_malformed: TPMS_ATTEST: truncated at magic \(offset 0/);
  t.match(at((b) => (b.writeUInt32BE(0xff544348, 0), b)), /magic 0xff544348 is not TPM_GENERATED_VALUE/);
  t.match(at((b) => (b.writeUInt16BE(0x8017, 4), b)), /type 0x8017 is not TPM_ST_ATTEST_QUOTE 0x8018 \(offset 4\)/);
  t.match(at((b) => (b.writeUInt16BE(0xffff, 6), b)), /qualifiedSigner size 65535 exceeds 66 \(offset 6\)/);
  t.match(at((b) => b.subarray(0, 50)), /truncated at clockInfo/);
  t.match(at((b) => Buffer.concat([b, Buffer.from([1, 2])])), /2 trailing bytes/);
  const safeAt = 8 + 34 + 2 + 5 + 16;
  t.match(at((b) => ((b[safeAt] = 2), b)), /clockInfo.safe 2 is not a TPMI_YES_NO \(offset 65\)/);
  t.match(reasonOf(() => parseTpmsAttest(new Uint8Array(4096))), /exceeds 2048/);
  t.match(reasonOf(() => parseTpmtSignature(Buffer.from('00140004', 'hex'))), /truncated at sig.size \(offset 4/);
  t.match(reasonOf(() => parseTpmtSignature(Buffer.from('001a000b0000', 'hex'))), /^evidence_unsupported: .*sigAlg ecdaa/);
  t.match(reasonOf(() => parseTpmtSignature(Buffer.from('0014000d0000', 'hex'))), /^evidence_unsupported: .*hash sha512/);
  t.match(reasonOf(() => parseTpmtPublic(akTemplate('ecc-p256'))), /^evidence_malformed: TPMT_PUBLIC: key does not import/);
  const r = new TpmReader(Buffer.from('0001', 'hex'), 'X');
  t.equal(r.u16('a'), 1);
  t.throws(() => r.u8('b'), /X: truncated at b \(offset 2, need 1 bytes, have 0\)/);
  // Bad PCR input shapes never crash the verifier.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  t.match(reasonOf(() => verifyTpmQuote({ attest: good, signature: good, ak: rsa, pcrs: { alg: 'md5' as never, values: {} } }, { akTrust: { keys: [rsa] } }, NOW)), /^evidence_malformed/);
  t.match(reasonOf(() => verifyTpmQuote({ attest: 'x' as never, signature: good, ak: rsa, pcrs: { alg: 'sha1', values: {} } }, { akTrust: { keys: [rsa] } }, NOW)), /^evidence_malformed/);
  const zeroSig = encodeTpmtSignature({ sigAlg: 'rsassa', hash: 'sha256', sig: Buffer.alloc(256) });
  t.match(reasonOf(() => verifyTpmQuote({ attest: good, signature: zeroSig, ak: 'not a key', pcrs: { alg: 'sha384', values: PCRS } }, { akTrust: { keys: [rsa] } }, NOW)), /^evidence_malformed/);
});

t.test('TPM response codes', async (t) => {
  t.same(describeRc(0x100), { name: 'TPM_RC_INITIALIZE', detail: '0x100' });
  t.same(describeRc(0x184), { name: 'TPM_RC_VALUE', detail: 'handle 1 (0x184)' });
  t.same(describeRc(0x2c4), { name: 'TPM_RC_VALUE', detail: 'parameter 2 (0x2c4)' });
  t.same(describeRc(0x98e), { name: 'TPM_RC_AUTH_FAIL', detail: 'session 1 (0x98e)' });
  t.equal(describeRc(0x902).name, 'TPM_RC_OBJECT_MEMORY');
  t.equal(describeRc(0x922).name, 'TPM_RC_RETRY');
  t.equal(describeRc(0x8000a).name, 'TSS layer 8 code 10');
});

t.test('AK certificate chains (CA made with the openssl CLI)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tpm-akca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const openssl = (args: string[]) => {
    const res = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${res.stderr}`);
  };
  const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(path.join(dir, 'ak.pem'), ak.publicKey.export({ type: 'spki', format: 'pem' }));
  for (const ca of ['ca', 'other']) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=${ca} AK CA`]);
  }
  // The AK cannot sign a CSR (restricted key): certify it with -force_pubkey.
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'dummy.key', '-out', 'ak.csr', '-subj', '/CN=AK']);
  openssl(['x509', '-req', '-in', 'ak.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-force_pubkey', 'ak.pem', '-days', '1', '-out', 'akcert.pem']);
  const pem = (f: string) => readFileSync(path.join(dir, f), 'utf8');
  const NOW = new Date(Date.now() + 5000); // certificates start at their issuance second

  const attest = makeAttest('sha256');
  const rs = sign('sha256', attest, { key: ak.privateKey, dsaEncoding: 'ieee-p1363' });
  const signature = encodeTpmtSignature({ sigAlg: 'ecdsa', hash: 'sha256', r: rs.subarray(0, 32), s: rs.subarray(32) });
  const input: TpmQuoteInput = { attest, signature, ak: pem('akcert.pem'), pcrs: { alg: 'sha384', values: PCRS } };
  t.equal(reasonOf(() => verifyTpmQuote(input, { akTrust: { caCerts: [pem('ca.pem')] } }, NOW)), 'ok', 'AK as certificate');
  const byKey = { ...input, ak: ak.publicKey };
  t.equal(reasonOf(() => verifyTpmQuote(byKey, { akTrust: { caCerts: [pem('ca.pem')] }, akCertChain: [pem('akcert.pem')] }, NOW)), 'ok', 'AK key + chain');
  t.match(reasonOf(() => verifyTpmQuote(input, { akTrust: { caCerts: [pem('other.pem')] } }, NOW)), /^chain_invalid/);
  t.match(reasonOf(() => verifyTpmQuote(byKey, { akTrust: { caCerts: [pem('ca.pem')] } }, NOW)), /^collateral_missing/);
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: otherKey }, { akTrust: { caCerts: [pem('ca.pem')] }, akCertChain: [pem('akcert.pem')] }, NOW)), /^chain_invalid: AK certificate does not certify/);
  // A TPMT_PUBLIC with a CA certificate: the certificate must certify the public area's key.
  const area = eccPublicArea(ak.publicKey, AK_ATTRIBUTES);
  const certified = { akTrust: { caCerts: [pem('ca.pem')] }, akCertChain: [pem('akcert.pem')] };
  t.equal(reasonOf(() => verifyTpmQuote({ ...input, ak: area }, certified, NOW)), 'ok', 'AK public area + its certificate');
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: eccPublicArea(otherKey, AK_ATTRIBUTES) }, certified, NOW)), /^chain_invalid: AK certificate does not certify the quoting AK/);
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: eccPublicArea(ak.publicKey, AK_ATTRIBUTES & ~TPMA_OBJECT.restricted) }, certified, NOW)), /^chain_invalid: AK is not a restricted/);
  // Every certificate of a CA file counts; an AK certificate is exactly one strict DER certificate.
  t.equal(reasonOf(() => verifyTpmQuote(input, { akTrust: { caCerts: [pem('other.pem') + pem('ca.pem')] } }, NOW)), 'ok', 'the second CA of a file');
  const akDer = new X509Certificate(pem('akcert.pem')).raw;
  const toPem = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: toPem(Buffer.concat([akDer, Buffer.from([0])])) }, { akTrust: { caCerts: [pem('ca.pem')] } }, NOW)),
    /^evidence_malformed: AK certificate: not an X.509 certificate: .*trailing data/);
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: pem('akcert.pem') + pem('ca.pem') }, { akTrust: { caCerts: [pem('ca.pem')] } }, NOW)),
    /^evidence_malformed: AK certificate: 2 certificates where one was expected/);
  // A certificate whose key usage does not allow signing (an EK certificate, say) certifies no AK.
  writeFileSync(path.join(dir, 'ek-usage.cnf'), 'keyUsage=critical,keyEncipherment\n');
  openssl(['x509', '-req', '-in', 'ak.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-force_pubkey', 'ak.pem', '-days', '1',
    '-extfile', 'ek-usage.cnf', '-out', 'ekusage.pem']);
  t.match(reasonOf(() => verifyTpmQuote({ ...input, ak: pem('ekusage.pem') }, { akTrust: { caCerts: [pem('ca.pem')] } }, NOW)),
    /^chain_invalid: AK certificate key usage does not include digitalSignature/);
  const later = new Date(Date.now() + 3 * 86400_000);
  t.match(reasonOf(() => verifyTpmQuote(input, { akTrust: { caCerts: [pem('ca.pem')] } }, later)), /^collateral_expired/);
});

/** TPMT_PUBLIC of a P-256 key with the given attributes, nameAlg and ECDSA scheme hash. */
function eccPublicArea(key: KeyObject, attributes: number, o: { nameAlg?: number; schemeHash?: number } = {}): Buffer {
  const jwk = key.export({ format: 'jwk' });
  const w = new TpmWriter();
  w.u16(TPM_ALG.ECC).u16(o.nameAlg ?? TPM_ALG.SHA256).u32(attributes).tpm2b(new Uint8Array(0));
  w.u16(TPM_ALG.NULL).u16(TPM_ALG.ECDSA).u16(o.schemeHash ?? TPM_ALG.SHA256);
  w.u16(TPM_ECC_CURVE.NIST_P256).u16(TPM_ALG.NULL);
  w.tpm2b(Buffer.from(jwk.x!, 'base64url')).tpm2b(Buffer.from(jwk.y!, 'base64url'));
  return w.finish();
}

function ecdsaQuote(privateKey: KeyObject, hash: 'sha256' | 'sha384', attest: Buffer): Buffer {
  const rs = sign(hash, attest, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return encodeTpmtSignature({ sigAlg: 'ecdsa', hash, r: rs.subarray(0, 32), s: rs.subarray(32) });
}

t.test("the AK's TPMT_PUBLIC is authenticated by its TPM Name, not by its key", async (t) => {
  // A non-restricted signing key signs any bytes, so it can sign a forged TPMS_ATTEST.
  const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const SIGN_ONLY = AK_ATTRIBUTES & ~TPMA_OBJECT.restricted;
  const honestArea = eccPublicArea(signingKey.publicKey, SIGN_ONLY);
  const forgedArea = eccPublicArea(signingKey.publicKey, AK_ATTRIBUTES); // claims "restricted"
  const attest = makeAttest('sha256');
  const signature = ecdsaQuote(signingKey.privateKey, 'sha256', attest);
  const input = (ak: Uint8Array | KeyObject): TpmQuoteInput => ({ attest, signature, ak, pcrs: { alg: 'sha384', values: PCRS } });
  const nameOf = (area: Uint8Array) => parseTpmtPublic(area).name;

  t.match(
    reasonOf(() => verifyTpmQuote(input(forgedArea), { akTrust: { keys: [signingKey.publicKey] } }, NOW)),
    /^chain_invalid: AK 000b[0-9a-f]{64} is pinned by key only, which does not authenticate its TPMT_PUBLIC/,
    'a key pin no longer vouches for a public area that claims "restricted"',
  );
  t.match(
    reasonOf(() => verifyTpmQuote(input(forgedArea), { akTrust: { names: [nameOf(honestArea)] } }, NOW)),
    /^chain_invalid: AK 000b[0-9a-f]{64} is not one of the trusted AK names/,
    'the edited public area has another Name',
  );
  t.match(
    reasonOf(() => verifyTpmQuote(input(honestArea), { akTrust: { names: [nameOf(honestArea)] } }, NOW)),
    /^chain_invalid: AK is not a restricted signing key/,
    'the enrolled, unedited public area is refused for what it is',
  );
  t.equal(reasonOf(() => verifyTpmQuote(input(forgedArea), { akTrust: { names: [nameOf(forgedArea)] } }, NOW)), 'ok', 'a restricted AK pinned by its Name');
  t.equal(
    verifyTpmQuote(input(forgedArea), { akTrust: { names: [nameOf(forgedArea)] } }, NOW).ak_name,
    Buffer.from(nameOf(forgedArea)).toString('hex'),
    'ak_name is the pinned Name',
  );

  // Every field of a pinned AK's public area is covered: nameAlg, scheme, attributes.
  const pinned = { akTrust: { names: [nameOf(forgedArea)] } };
  const edits: [string, Buffer][] = [
    ['nameAlg sha384', eccPublicArea(signingKey.publicKey, AK_ATTRIBUTES, { nameAlg: TPM_ALG.SHA384 })],
    ['scheme hash sha384', eccPublicArea(signingKey.publicKey, AK_ATTRIBUTES, { schemeHash: TPM_ALG.SHA384 })],
    ['attributes without fixedTPM', eccPublicArea(signingKey.publicKey, AK_ATTRIBUTES & ~TPMA_OBJECT.fixedTPM)],
  ];
  for (const [what, area] of edits) {
    t.match(reasonOf(() => verifyTpmQuote(input(area), pinned, NOW)), /^chain_invalid: AK [0-9a-f]+ is not one of the trusted AK names/, what);
  }
  t.match(reasonOf(() => verifyTpmQuote(input(signingKey.publicKey), pinned, NOW)), /^chain_invalid: AK pinned by TPM Name must come as its TPMT_PUBLIC/);
  t.equal(reasonOf(() => verifyTpmQuote(input(signingKey.publicKey), { akTrust: { keys: [signingKey.publicKey] } }, NOW)), 'ok', 'a bare key vouched for elsewhere');

  // A key with a fixed scheme signs with it only.
  const sha384Sig = { ...input(forgedArea), signature: ecdsaQuote(signingKey.privateKey, 'sha384', attest) };
  t.match(reasonOf(() => verifyTpmQuote(sha384Sig, pinned, NOW)), /^signature_invalid: signature scheme ecdsa\/sha384 is not the AK's fixed scheme ecdsa\/sha256/);
});
