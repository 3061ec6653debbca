/**
 * Our TpmAttester against a real swtpm: its quotes verify with tpm2_checkquote (tpm2-tools,
 * an independent implementation) and with our verifier; tampering, wrong AK / nonce,
 * truncation and counter regression are rejected with the right reasons.
 */
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { TpmAttester, type AkPublic, type TpmQuoteResult } from '../../src/attestation/tpm/attester.js';
import { TpmCommandError } from '../../src/attestation/tpm/rc.js';
import { runCommand } from '../../src/attestation/tpm/commands.js';
import { TcpTpmTransport } from '../../src/attestation/tpm/transport.js';
import { verifyTpmQuote, type TpmQuoteInput, type TpmVerifyRefs } from '../../src/attestation/tpm/verify.js';
import { encodeToolsPcrs, startSwtpm, swtpmSkipReason, tpm2, type Swtpm } from './tpm-swtpm-helper.js';
import { reasonOf } from '../helpers/attestation.js';

const skip = swtpmSkipReason();
const NOW = new Date();
const SELECTION = { alg: 'sha256' as const, indices: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 23] };


if (skip) {
  t.skip(skip, () => {});
} else {
  let tpm: Swtpm;
  t.before(async () => {
    tpm = await startSwtpm();
  });
  t.teardown(async () => tpm?.stop());

  /** Quotes with a fresh attester and closes it so the single-client swtpm is free again. */
  async function quoteWith(
    algorithm: 'ecc-p256' | 'rsa-2048',
    nonce: Buffer,
    hierarchy: 'endorsement' | 'owner' = 'endorsement',
  ): Promise<{ ak: AkPublic; quote: TpmQuoteResult; akPem: string }> {
    const attester = await TpmAttester.connect({ host: '127.0.0.1', port: tpm.port }, { algorithm, hierarchy, startup: true });
    try {
      const ak = await attester.start();
      const quote = await attester.quote(nonce, SELECTION);
      return { ak, quote, akPem: ak.key.export({ type: 'spki', format: 'pem' }).toString() };
    } finally {
      await attester.close();
    }
  }

  for (const algorithm of ['ecc-p256', 'rsa-2048'] as const) {
    t.test(`${algorithm} quote verifies with tpm2_checkquote and with our verifier`, async (t) => {
      const nonce = Buffer.from(`nonce-${algorithm}-0123456789abcdef`);
      const { ak, quote, akPem } = await quoteWith(algorithm, nonce);
      t.equal(Object.keys(quote.pcrs.values).length, SELECTION.indices.length, 'all PCRs read (more than 8: two PCR_Reads)');

      const files = { ak: `ak-${algorithm}.pem`, msg: `msg-${algorithm}`, sig: `sig-${algorithm}`, pcrs: `pcrs-${algorithm}` };
      writeFileSync(path.join(tpm.dir, files.ak), akPem);
      writeFileSync(path.join(tpm.dir, files.msg), quote.attest);
      writeFileSync(path.join(tpm.dir, files.sig), quote.signature);
      writeFileSync(path.join(tpm.dir, files.pcrs), encodeToolsPcrs('sha256', quote.pcrs.values));
      const args = ['-u', files.ak, '-m', files.msg, '-s', files.sig, '-f', files.pcrs, '-g', 'sha256', '-q', nonce.toString('hex')];
      t.doesNotThrow(() => tpm2(tpm, 'tpm2_checkquote', args), 'tpm2_checkquote accepts our quote');
      // tpm2_checkquote is a real check: a different nonce makes it fail.
      t.throws(() => tpm2(tpm, 'tpm2_checkquote', [...args.slice(0, -1), 'deadbeef']), 'tpm2_checkquote rejects a wrong nonce');

      const input: TpmQuoteInput = { ...quote, ak: ak.tpmtPublic };
      const refs: TpmVerifyRefs = { expectedExtraData: nonce, akTrust: { names: [ak.name], keys: [ak.key] } };
      const claims = verifyTpmQuote(input, refs, NOW);
      t.equal(claims.ak_name, Buffer.from(ak.name).toString('hex'));
      t.equal(claims.qualified_signer, Buffer.from(ak.qualifiedName).toString('hex'), 'qualifiedSigner is the AK qualified name');
      t.equal(claims.extra_data, nonce.toString('hex'));
      t.same(claims.signature_scheme, { sig_alg: algorithm === 'ecc-p256' ? 'ecdsa' : 'rsassa', hash_alg: 'sha256' });
      t.same(Object.keys(claims.pcrs).map(Number), SELECTION.indices);
      // The AK may also be given as PEM or KeyObject.
      t.equal(verifyTpmQuote({ ...input, ak: akPem }, refs, NOW).pcr_digest, claims.pcr_digest);
      t.equal(verifyTpmQuote({ ...input, ak: ak.key }, refs, NOW).pcr_digest, claims.pcr_digest);
    });
  }

  t.test('tampering, wrong AK, wrong nonce, truncation', async (t) => {
    const nonce = Buffer.from('tamper-test-nonce');
    const { ak, quote } = await quoteWith('ecc-p256', nonce, 'owner');
    const input: TpmQuoteInput = { ...quote, ak: ak.tpmtPublic };
    const refs: TpmVerifyRefs = { expectedExtraData: nonce, akTrust: { names: [ak.name], keys: [ak.key] } };
    t.equal(reasonOf(() => verifyTpmQuote(input, refs, NOW)), 'ok', 'owner-hierarchy AK works too');

    // Field regions of TPMS_ATTEST, from its layout.
    const a = Buffer.from(quote.attest);
    const qsLen = a.readUInt16BE(6);
    const edAt = 8 + qsLen;
    const edLen = a.readUInt16BE(edAt);
    const clockAt = edAt + 2 + edLen;
    const fwAt = clockAt + 17;
    const selAt = fwAt + 8;
    const digestAt = selAt + 4 + 3 + 3;
    const regions: [string, number, string][] = [
      ['magic', 0, 'evidence_malformed'],
      ['type', 5, 'evidence_malformed'],
      ['qualifiedSigner.size', 7, 'evidence_malformed'],
      ['qualifiedSigner', 8 + 5, 'signature_invalid'],
      ['extraData', edAt + 2, 'signature_invalid'],
      ['clock', clockAt + 7, 'signature_invalid'],
      ['resetCount', clockAt + 11, 'signature_invalid'],
      ['restartCount', clockAt + 15, 'signature_invalid'],
      ['safe', clockAt + 16, 'signature_invalid'],
      ['firmwareVersion', fwAt + 3, 'signature_invalid'],
      ['pcrSelect.bitmap', selAt + 7, 'signature_invalid'],
      ['pcrDigest', digestAt + 2 + 4, 'signature_invalid'],
    ];
    for (const [field, at, reason] of regions) {
      const bad = Buffer.from(a);
      bad[at]! ^= 1;
      t.equal(reasonOf(() => verifyTpmQuote({ ...input, attest: bad }, refs, NOW)), reason, `bit flip in ${field}`);
    }
    for (let n = 0; n < a.length; n++) {
      const r = reasonOf(() => verifyTpmQuote({ ...input, attest: a.subarray(0, n) }, refs, NOW));
      if (r !== 'evidence_malformed') t.fail(`attest truncated to ${n} bytes gave ${r}`);
    }
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, attest: Buffer.concat([a, Buffer.from([0])]) }, refs, NOW)), 'evidence_malformed', 'trailing byte');
    const s = Buffer.from(quote.signature);
    for (const n of [0, 1, 3, 5, s.length - 1]) {
      t.equal(reasonOf(() => verifyTpmQuote({ ...input, signature: s.subarray(0, n) }, refs, NOW)), 'evidence_malformed', `signature truncated to ${n}`);
    }
    const badSig = Buffer.from(s);
    badSig[10]! ^= 0x80;
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, signature: badSig }, refs, NOW)), 'signature_invalid');

    // Wrong nonce / empty expected nonce.
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: Buffer.from('other') }, NOW)), 'binding_mismatch');
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, expectedExtraData: new Uint8Array(0) }, NOW)), 'binding_mismatch');

    // Wrong AK: an untrusted key, and a trusted key that did not sign.
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, akTrust: { keys: [other] } }, NOW)), 'chain_invalid');
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, ak: other }, { ...refs, akTrust: { keys: [other] } }, NOW)), 'signature_invalid');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, ak: rsa }, { ...refs, akTrust: { keys: [rsa] } }, NOW)), 'signature_invalid', 'ECDSA signature vs RSA AK');
    // An AK that is not a restricted signing key is never trusted for quotes.
    const unrestricted = Buffer.from(ak.tpmtPublic);
    unrestricted[5]! &= ~0x01; // objectAttributes (bytes 4..7, big-endian): bit 16 = restricted
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, ak: unrestricted }, refs, NOW)), 'chain_invalid');
    // Edits that keep it restricted still change its Name: a Name pin refuses them, a key pin no longer vouches.
    const edited = Buffer.from(ak.tpmtPublic);
    edited[7]! &= ~0x02; // objectAttributes without fixedTPM
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, ak: edited }, refs, NOW)), 'chain_invalid', 'edited attributes, pinned by Name');
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, akTrust: { keys: [ak.key] } }, NOW)), 'chain_invalid', 'TPMT_PUBLIC pinned by key only');

    // PCR values missing or stale.
    const values = { ...quote.pcrs.values };
    delete values[16];
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha256', values } }, refs, NOW)), 'pcr_mismatch');
    t.equal(reasonOf(() => verifyTpmQuote({ ...input, pcrs: { alg: 'sha256', values: { ...quote.pcrs.values, 3: 'zz' } } }, refs, NOW)), 'evidence_malformed');
  });

  t.test('clock and counters must not go backwards for the same AK', async (t) => {
    const nonce = Buffer.from('counter');
    const { ak, quote } = await quoteWith('ecc-p256', nonce);
    const input: TpmQuoteInput = { ...quote, ak: ak.tpmtPublic };
    const refs: TpmVerifyRefs = { expectedExtraData: nonce, akTrust: { names: [ak.name], keys: [ak.key] } };
    const first = verifyTpmQuote(input, refs, NOW).clock_state;
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, previous: first }, NOW)), 'ok', 'same state is not a regression');

    const { quote: later } = await quoteWith('ecc-p256', nonce); // same template + seed: same AK
    const second = verifyTpmQuote({ ...later, ak: ak.tpmtPublic }, { ...refs, previous: first }, NOW).clock_state;
    t.ok(second.clock >= first.clock, 'clock advanced');
    t.equal(reasonOf(() => verifyTpmQuote(input, { ...refs, previous: second }, NOW)), second.clock > first.clock ? 'counter_regression' : 'ok', 'replaying the older quote');

    const synthetic = (d: Partial<typeof first>) => ({ ...refs, previous: { ...first, ...d } });
    t.equal(reasonOf(() => verifyTpmQuote(input, synthetic({ clock: first.clock + 1n }), NOW)), 'counter_regression', 'clock');
    t.equal(reasonOf(() => verifyTpmQuote(input, synthetic({ reset_count: first.reset_count + 1 }), NOW)), 'counter_regression', 'resetCount');
    t.equal(reasonOf(() => verifyTpmQuote(input, synthetic({ restart_count: first.restart_count + 1 }), NOW)), 'counter_regression', 'restartCount');
    t.equal(reasonOf(() => verifyTpmQuote(input, synthetic({ reset_count: first.reset_count - 1, restart_count: first.restart_count + 5, clock: 0n }), NOW)), 'ok', 'an older reset epoch');
    t.equal(reasonOf(() => verifyTpmQuote(input, synthetic({ ak_spki_sha256: '00'.repeat(32), clock: first.clock + 1000n }), NOW)), 'ok', 'state of another AK is not compared');
  });

  t.test('TPM response codes become readable errors', async (t) => {
    const transport = await TcpTpmTransport.connect('127.0.0.1', tpm.port);
    try {
      // Quote with a handle that does not exist: a format-1 code naming handle 1.
      const params = Buffer.from('0000' + '0010' + '00000000', 'hex');
      const err = await runCommand(transport, 'Quote', { handles: [0x80ffffff], pwSessions: 1, params }).then(
        () => undefined,
        (e: unknown) => e,
      );
      t.ok(err instanceof TpmCommandError, 'TpmCommandError');
      t.match((err as TpmCommandError).message, /^TPM2_Quote failed: TPM_RC_[A-Z0-9_]+ \(handle 1 \(0x[0-9a-f]+\)\)$/);
      t.equal((err as TpmCommandError).reason, 'tpm_command_failed');
    } finally {
      await transport.close();
    }
    const attester = await TpmAttester.connect({ host: '127.0.0.1', port: tpm.port });
    try {
      await attester.start();
      const tooLong = await attester.quote(new Uint8Array(65), SELECTION).catch((e: { reason?: string }) => e.reason);
      t.equal(tooLong, 'tpm_bad_request', 'extraData > 64 bytes');
      const badPcr = await attester.quote(new Uint8Array(1), { alg: 'sha256', indices: [24] }).catch((e: { reason?: string }) => e.reason);
      t.equal(badPcr, 'tpm_bad_request', 'PCR 24');
    } finally {
      await attester.close();
    }
  });
}
