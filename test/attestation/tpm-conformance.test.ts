/**
 * Real third-party TPM quotes (../shared/conformance, see tpm/PROVENANCE.md): a GCP Windows
 * Shielded VM (go-attestation) and two Azure vTPM quotes (trustee: Milan and Genoa). Each
 * must verify exactly as PROVENANCE.md states, and its listed negatives must fail.
 */
import t from 'tap';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { conformance } from '../helpers/paths.js';
import { describeTpmQuote, verifyTpmQuote, type TpmQuoteInput } from '../../src/attestation/tpm/verify.js';
import { parseTpmtPublic } from '../../src/attestation/tpm/public.js';
import { reasonOf } from '../helpers/attestation.js';

const tpmDir = conformance('tpm');
const snpDir = conformance('sev-snp');
if ('skip' in tpmDir || 'skip' in snpDir) {
  const reason = 'skip' in tpmDir ? tpmDir.skip : (snpDir as { skip: string }).skip;
  t.skip(reason, () => {});
} else {
  const NOW = new Date('2026-01-01T00:00:00Z');
  const read = (...p: string[]) => readFileSync(path.join(...p));
  const pcrFile = (...p: string[]) => JSON.parse(read(...p).toString('utf8')) as Record<number, string>;
  const hclAkPub = (file: string): KeyObject => {
    const runtime = JSON.parse(read(file).toString('utf8')) as { keys: { kid: string }[] };
    const jwk = runtime.keys.find((k) => k.kid === 'HCLAkPub');
    if (!jwk) throw new Error(`no HCLAkPub in ${file}`);
    return createPublicKey({ key: jwk as never, format: 'jwk' });
  };
  const flip = (b: Uint8Array, i: number) => {
    const c = Buffer.from(b);
    c[i]! ^= 1;
    return c;
  };

  // --- GCP Windows Shielded VM: SHA-1 bank, empty nonce, AK from TPMT_PUBLIC, RSASSA/SHA-1 ---
  t.test('go-attestation GCP Windows quote', async (t) => {
    const d = path.join(tpmDir.dir, 'go-attestation-gcp-windows/derived');
    const akPublic = read(d, 'ak_tpmt_public.bin');
    const ak = parseTpmtPublic(akPublic);
    t.equal(Buffer.from(ak.name).toString('hex'), '000b4ce9b151f75089d74c15dabe9d520cffafbcafd5d43be0aad2e2d88d54717e2e');
    t.equal(ak.objectAttributes, 0x00050472);
    t.equal(ak.key.asymmetricKeyDetails?.modulusLength, 2048);
    t.equal(ak.key.asymmetricKeyDetails?.publicExponent, 65537n);
    const input: TpmQuoteInput = {
      attest: read(d, 'quote_tpms_attest.bin'),
      signature: read(d, 'quote_tpmt_signature.bin'),
      pcrs: { alg: 'sha1', values: pcrFile(d, 'pcrs_sha1.json') },
      ak: akPublic,
    };
    const refs = { expectedExtraData: new Uint8Array(0), akTrust: { names: [ak.name] } };
    const claims = verifyTpmQuote(input, refs, NOW);
    t.equal(claims.ak_name, '000b4ce9b151f75089d74c15dabe9d520cffafbcafd5d43be0aad2e2d88d54717e2e');
    t.equal(claims.qualified_signer, '000bad427e7fc8821f74c7c6964641f9fa053772122d4b94a6cc3a3fcfccdd55b5ad');
    t.equal(claims.extra_data, '');
    t.equal(claims.pcr_digest, 'a610f27bc687ce906243287d832706036e79f6e1');
    t.equal(claims.pcr_bank, 'sha1');
    t.equal(Object.keys(claims.pcrs).length, 24);
    t.equal(claims.pcrs['0'], '51c323de0c0c694f4601cdd02beb58ff13629f74');
    t.same(claims.signature_scheme, { sig_alg: 'rsassa', hash_alg: 'sha1' });
    t.equal(describeTpmQuote(input.attest).pcr_selection[0]!.bank, 'sha1');

    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: Buffer.from('x') }, NOW)), 'binding_mismatch');
    const flippedPcr = { ...input.pcrs.values, 4: flip(Buffer.from(input.pcrs.values[4]!, 'hex'), 0).toString('hex') };
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha1', values: flippedPcr } }, refs, NOW)), 'pcr_mismatch');
    const missing: Record<number, string> = { ...input.pcrs.values };
    delete missing[23];
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha1', values: missing } }, refs, NOW)), 'pcr_mismatch');
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, signature: flip(input.signature, 100) }, refs, NOW)), 'signature_invalid');
    // No trust configured at all / a different pinned key.
    t.equal(reasonOf(() => verifyTpmQuote(input, { akTrust: {} }, NOW)), 'collateral_missing');
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    t.equal(reasonOf(() => verifyTpmQuote(input, { akTrust: { keys: [other] } }, NOW)), 'chain_invalid');
  });

  // --- Azure vTPM quotes: AK = HCLAkPub JWK, raw RSASSA-SHA256 signature, SHA-256 bank ---
  const azure = [
    {
      name: 'trustee Azure SNP vTPM (Milan)',
      dir: path.join(tpmDir.dir, 'trustee-azure-snp-vtpm-milan/derived'),
      nonce: Buffer.from('challenge'),
      pcrDigest: '0daff74c2fca14910b1e9b54a384707434c3365db9f163cc73a39a9f7500833f',
      pcr0: 'f3a7e99a5f819a034386bce753a48a73cfdaa0bea0ecfc124bedbf5a8c4799be',
    },
    {
      name: 'trustee Azure SNP vTPM (Genoa)',
      dir: path.join(snpDir.dir, 'trustee-azure-genoa/derived'),
      nonce: Buffer.from(
        '0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f',
        'hex',
      ),
      pcrDigest: '2b30a66d715a7801b86d7912b710838bd3bd8d9aeec7c7135563f938cf8b3399',
      pcr0: 'afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338',
      resetCount: 53,
      clock: '1413298427',
      firmware: '2020031200120003',
    },
  ];
  for (const az of azure) {
    t.test(az.name, async (t) => {
      const ak = hclAkPub(path.join(az.dir, 'hcl_runtime_data.json'));
      const input: TpmQuoteInput = {
        attest: read(az.dir, 'tpm_quote_tpms_attest.bin'),
        signature: read(az.dir, 'tpm_quote_signature_rsassa_sha256.bin'),
        signatureScheme: { sigAlg: 'rsassa', hashAlg: 'sha256' },
        pcrs: { alg: 'sha256', values: pcrFile(az.dir, 'tpm_pcrs_sha256.json') },
        ak,
      };
      const refs = { expectedExtraData: az.nonce, akTrust: { keys: [ak] } };
      const claims = verifyTpmQuote(input, refs, NOW);
      t.equal(claims.extra_data, az.nonce.toString('hex'));
      t.equal(claims.pcr_digest, az.pcrDigest);
      t.equal(claims.pcrs['0'], az.pcr0);
      t.equal(Object.keys(claims.pcrs).length, 24);
      t.same(claims.signature_scheme, { sig_alg: 'rsassa', hash_alg: 'sha256' });
      t.equal(claims.ak_name, null);
      if (az.resetCount !== undefined) {
        t.equal(claims.clock.reset_count, az.resetCount);
        t.equal(claims.clock.clock, az.clock);
        t.equal(claims.firmware_version, az.firmware);
      }
      // The AK also works as a PEM SPKI string.
      const pem = ak.export({ type: 'spki', format: 'pem' }).toString();
      t.equal(verifyTpmQuote({ ...input, ak: pem }, refs, NOW).pcr_digest, az.pcrDigest);

      const reversed = Buffer.from(az.nonce).reverse();
      t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: reversed }, NOW)), 'binding_mismatch');
      t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: new Uint8Array(0) }, NOW)), 'binding_mismatch');
      const pcr0 = flip(Buffer.from(az.pcr0, 'hex'), 0).toString('hex');
      const flippedPcrs = { alg: 'sha256' as const, values: { ...input.pcrs.values, 0: pcr0 } };
      t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: flippedPcrs }, refs, NOW)), 'pcr_mismatch');
      t.equal(reasonOf(() => verifyTpmQuote({ ...input, signature: flip(input.signature, 0) }, refs, NOW)), 'signature_invalid');
      // Declared with the wrong hash: the signature must not verify.
      const wrongHash = { ...input, signatureScheme: { sigAlg: 'rsassa' as const, hashAlg: 'sha1' as const } };
      t.equal(reasonOf(() => verifyTpmQuote(wrongHash, refs, NOW)), 'signature_invalid');
      // The PCR values given as the wrong bank.
      t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { ...input.pcrs, alg: 'sha1' } }, refs, NOW)), 'pcr_mismatch');
    });
  }
}
