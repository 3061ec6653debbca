/**
 * Quotes made by tpm2-tools (tpm2_createek/createak/quote against a real swtpm) verify with
 * our verifier; a PCR extended with tpm2_pcrextend is caught against stale values.
 */
import t from 'tap';
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseTpmtPublic } from '../../src/attestation/tpm/public.js';
import { verifyTpmQuote, type TpmQuoteInput, type TpmVerifyRefs } from '../../src/attestation/tpm/verify.js';
import { decodeToolsPcrs, startSwtpm, swtpmSkipReason, tpm2, type Swtpm } from './tpm-swtpm-helper.js';
import { reasonOf } from '../helpers/attestation.js';

const skip = swtpmSkipReason();
const NOW = new Date();


if (skip) {
  t.skip(skip, () => {});
} else {
  let tpm: Swtpm;
  t.before(async () => {
    tpm = await startSwtpm();
    tpm2(tpm, 'tpm2_createek', ['-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
  });
  t.teardown(async () => tpm?.stop());
  const file = (name: string) => readFileSync(path.join(tpm.dir, name));

  const PCRS = '0,1,2,3,4,5,6,7,8,9,10,16,23';
  const quote = (ak: string, tag: string, nonce: string, bank = 'sha256', format = 'serialized') => {
    tpm2(tpm, 'tpm2_quote', ['-c', `${ak}.ctx`, '-l', `${bank}:${PCRS}`, '-q', nonce, '-g', 'sha256',
      '-m', `${tag}.msg`, '-s', `${tag}.sig`, '-o', `${tag}.pcrs`, '-F', format]);
    return { attest: file(`${tag}.msg`), signature: file(`${tag}.sig`), pcrsFile: file(`${tag}.pcrs`) };
  };

  for (const [alg, scheme] of [['ecc', 'ecdsa'], ['rsa', 'rsassa']] as const) {
    t.test(`tpm2_createak (${alg}/${scheme}) + tpm2_quote verify with our verifier`, async (t) => {
      const ak = `ak-${alg}`;
      tpm2(tpm, 'tpm2_createak', ['-C', 'ek.ctx', '-c', `${ak}.ctx`, '-G', alg, '-g', 'sha256', '-s', scheme, '-u', `${ak}.pub`, '-n', `${ak}.name`]);
      tpm2(tpm, 'tpm2_readpublic', ['-c', `${ak}.ctx`, '-f', 'pem', '-o', `${ak}.pem`]);
      const akPem = file(`${ak}.pem`).toString();
      // ak.pub is a TPM2B_PUBLIC: our TPMT_PUBLIC parser must compute the Name tpm2-tools wrote.
      const akPublic = parseTpmtPublic(file(`${ak}.pub`).subarray(2));
      t.equal(Buffer.from(akPublic.name).toString('hex'), file(`${ak}.name`).toString('hex'), 'AK Name matches tpm2-tools');
      t.ok(akPublic.key.equals(createPublicKey(akPem)), 'same key as tpm2_readpublic -f pem');

      const nonce = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
      const q = quote(ak, `${ak}-q1`, nonce);
      const pcrs = decodeToolsPcrs(q.pcrsFile);
      t.equal(pcrs.hashAlg, 0x000b);
      const input: TpmQuoteInput = { attest: q.attest, signature: q.signature, pcrs: { alg: 'sha256', values: pcrs.values }, ak: akPem };
      const refs = { expectedExtraData: Buffer.from(nonce, 'hex'), akTrust: { names: [akPublic.name], keys: [akPublic.key] } };
      const claims = verifyTpmQuote(input, refs, NOW);
      t.same(claims.signature_scheme, { sig_alg: scheme, hash_alg: 'sha256' });
      t.same(Object.keys(claims.pcrs).map(Number), PCRS.split(',').map(Number));
      t.equal(verifyTpmQuote({ ...input, ak: file(`${ak}.pub`).subarray(2) }, refs, NOW).ak_name, file(`${ak}.name`).toString('hex'));
      t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: Buffer.from('00', 'hex') }, NOW)), 'binding_mismatch');

      // The `values` PCR format carries the same values in ascending index order.
      const v = quote(ak, `${ak}-q1v`, nonce, 'sha256', 'values');
      const raw = v.pcrsFile;
      t.equal(raw.length, 13 * 32);
      t.equal(raw.subarray(11 * 32, 12 * 32).toString('hex'), pcrs.values[16]);
    });
  }

  t.test('tpm2_pcrextend: stale PCR values are caught, fresh ones accepted', async (t) => {
    tpm2(tpm, 'tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak-x.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', 'ak-x.pub']);
    const akPublic = parseTpmtPublic(file('ak-x.pub').subarray(2));
    const refs = { expectedExtraData: Buffer.from('0102', 'hex'), akTrust: { names: [akPublic.name], keys: [akPublic.key] } };
    const before = quote('ak-x', 'x1', '0102');
    const stale = decodeToolsPcrs(before.pcrsFile).values;

    tpm2(tpm, 'tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
    const after = quote('ak-x', 'x2', '0102');
    const fresh = decodeToolsPcrs(after.pcrsFile).values;
    t.not(fresh[16], stale[16], 'PCR 16 changed');
    const input = { attest: after.attest, signature: after.signature, ak: akPublic.key };
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha256', values: stale } }, refs, NOW)), 'pcr_mismatch');
    const claims = verifyTpmQuote({ ...input, pcrs: { alg: 'sha256', values: fresh } }, refs, NOW);
    t.equal(claims.pcrs['16'], fresh[16]);

    // The clock state of the first quote is older: it may precede, never follow, the second.
    const first = verifyTpmQuote({ ...before, ak: akPublic.key, pcrs: { alg: 'sha256', values: stale } }, refs, NOW).clock_state;
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha256', values: fresh } }, { ...refs, previous: first }, NOW)), 'ok');
  });

  t.test('a non-restricted TPM key cannot pass as an AK by editing its public area', async (t) => {
    // A sign-only key that is not restricted signs any digest: here, a forged TPMS_ATTEST.
    tpm2(tpm, 'tpm2_createprimary', ['-C', 'o', '-c', 'prim.ctx']);
    tpm2(tpm, 'tpm2_create', ['-C', 'prim.ctx', '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign',
      '-u', 'signer.pub', '-r', 'signer.priv']);
    tpm2(tpm, 'tpm2_load', ['-C', 'prim.ctx', '-u', 'signer.pub', '-r', 'signer.priv', '-c', 'signer.ctx', '-n', 'signer.name']);
    tpm2(tpm, 'tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak-f.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', 'ak-f.pub']);
    const genuine = quote('ak-f', 'f1', '0badc0de');
    // The forged quote claims PCR 16 holds a value it never held: pcrDigest recomputed to match.
    const claimedPcrs: Record<number, string> = { ...decodeToolsPcrs(genuine.pcrsFile).values, 16: 'ab'.repeat(32) };
    const digest = createHash('sha256');
    for (const i of PCRS.split(',').map(Number)) digest.update(Buffer.from(claimedPcrs[i]!, 'hex'));
    const forged = Buffer.concat([genuine.attest.subarray(0, genuine.attest.length - 32), digest.digest()]);
    writeFileSync(path.join(tpm.dir, 'forged.msg'), forged);
    tpm2(tpm, 'tpm2_sign', ['-c', 'signer.ctx', '-g', 'sha256', '-s', 'ecdsa', '-o', 'forged.sig', 'forged.msg']);

    const signerArea = file('signer.pub').subarray(2);
    const signer = parseTpmtPublic(signerArea);
    t.equal(Buffer.from(signer.name).toString('hex'), file('signer.name').toString('hex'), 'Name as tpm2-tools computes it');
    const claimsRestricted = Buffer.from(signerArea);
    claimsRestricted[5]! |= 0x01; // objectAttributes bit 16: restricted
    const input = (ak: Uint8Array): TpmQuoteInput => ({
      attest: forged,
      signature: file('forged.sig'),
      pcrs: { alg: 'sha256', values: claimedPcrs },
      ak,
    });
    const refs = (akTrust: TpmVerifyRefs['akTrust']): TpmVerifyRefs => ({ expectedExtraData: Buffer.from('0badc0de', 'hex'), akTrust });
    // The signature is genuine: only the AK's authentication stands between it and acceptance.
    t.match(reasonOf(() => verifyTpmQuote(input(claimsRestricted), refs({ keys: [signer.key] }), NOW)), /^chain_invalid/, 'a key pin does not authenticate the edited area');
    t.match(reasonOf(() => verifyTpmQuote(input(claimsRestricted), refs({ names: [signer.name] }), NOW)), /^chain_invalid/, 'the edited area has another Name');
    t.match(reasonOf(() => verifyTpmQuote(input(signerArea), refs({ names: [signer.name] }), NOW)), /^chain_invalid/, 'the genuine area is not restricted');
    t.equal(reasonOf(() => verifyTpmQuote(input(claimsRestricted), refs({ names: [parseTpmtPublic(claimsRestricted).name] }), NOW)), 'ok',
      'control: pinning the edited Name itself would accept it (so the checks above are what refuse it)');
  });

  t.test('SHA-1 bank quoted with a SHA-256 signing scheme: digest uses the signing hash', async (t) => {
    tpm2(tpm, 'tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak-s.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak-s.pub']);
    const akPublic = parseTpmtPublic(file('ak-s.pub').subarray(2));
    const q = quote('ak-s', 's1', 'ff', 'sha1');
    const pcrs = decodeToolsPcrs(q.pcrsFile);
    t.equal(pcrs.hashAlg, 0x0004);
    const claims = verifyTpmQuote(
      { attest: q.attest, signature: q.signature, ak: akPublic.key, pcrs: { alg: 'sha1', values: pcrs.values } },
      { expectedExtraData: Buffer.from('ff', 'hex'), akTrust: { names: [akPublic.name], keys: [akPublic.key] } },
      NOW,
    );
    t.equal(claims.pcr_bank, 'sha1');
    t.equal(claims.pcr_digest.length, 64, 'SHA-256 pcrDigest over SHA-1 PCR values');
  });
}
