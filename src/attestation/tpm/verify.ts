/**
 * TPM 2.0 quote verifier (pure): structure, AK trust, signature over the raw TPMS_ATTEST,
 * extraData binding, PCR digest recomputation and clock/counter monotonicity — in that
 * order, each failure with its own reason code.
 */
import { constants, createHash, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { AttestationError, hex } from '../types.js';
import { checkAkTrust, resolveAk, spkiSha256, type AkTrust, type ResolvedAk } from './ak.js';
import { algName, digestSize, hashAlgId, type PcrBank } from './constants.js';
import {
  parseTpmsAttest,
  parseTpmtSignature,
  rawSignature,
  type SigAlg,
  type TpmsAttestQuote,
  type TpmtSignature,
} from './structures.js';

export interface TpmQuoteInput {
  /** TPMS_ATTEST bytes exactly as signed */
  attest: Uint8Array;
  /** TPMT_SIGNATURE, or raw signature bytes when `signatureScheme` is given */
  signature: Uint8Array;
  /** declared scheme for producers (Azure) that hand out raw RSASSA bytes; ECDSA raw = r||s */
  signatureScheme?: { sigAlg: SigAlg; hashAlg: PcrBank };
  pcrs: { alg: PcrBank; values: Record<number, string> };
  /** the AK: TPMT_PUBLIC bytes (pinned by Name or certified), or a KeyObject, PEM SPKI or certificate */
  ak: KeyObject | Uint8Array | string;
}

/** What the caller stores per AK to detect rollback on the next quote. */
export interface TpmClockState {
  ak_spki_sha256: string;
  clock: bigint;
  reset_count: number;
  restart_count: number;
}

export interface TpmVerifyRefs {
  /** when set, extraData must equal it exactly (empty means empty) */
  expectedExtraData?: Uint8Array;
  akTrust: AkTrust;
  /** AK certificate then intermediates (PEM) */
  akCertChain?: string[];
  /** last accepted state for the same AK; ignored when it names another AK */
  previous?: TpmClockState;
}

export interface TpmClaims {
  type: 'tpm';
  /** TPM Name of the AK (hex), present when the AK was given as TPMT_PUBLIC */
  ak_name: string | null;
  ak_spki_sha256: string;
  qualified_signer: string;
  extra_data: string;
  /** u64 values as decimal / hex strings so claims stay JSON-safe */
  clock: { clock: string; reset_count: number; restart_count: number; safe: boolean };
  firmware_version: string;
  pcr_bank: PcrBank;
  pcrs: Record<string, string>;
  pcr_digest: string;
  signature_scheme: { sig_alg: SigAlg; hash_alg: string };
  /** store this and pass it back as `previous` next time */
  clock_state: TpmClockState;
}

/** Decoded quote for `inspect-evidence` (no verification). */
export function describeTpmQuote(attest: Uint8Array) {
  const quote = parseTpmsAttest(attest);
  return {
    magic: `0x${quote.magic.toString(16)}`,
    type: `0x${quote.type.toString(16)}`,
    qualified_signer: hex(quote.qualifiedSigner),
    extra_data: hex(quote.extraData),
    clock: {
      clock: quote.clockInfo.clock.toString(),
      reset_count: quote.clockInfo.resetCount,
      restart_count: quote.clockInfo.restartCount,
      safe: quote.clockInfo.safe,
    },
    firmware_version: quote.firmwareVersion.toString(16).padStart(16, '0'),
    pcr_selection: quote.pcrSelections.map((s) => ({ bank: algName(s.hashAlg), indices: s.indices })),
    pcr_digest: hex(quote.pcrDigest),
  };
}

function checkSignature(ak: ResolvedAk, attest: Uint8Array, sig: TpmtSignature): void {
  // A key with a fixed scheme signs with that scheme only: anything else did not come from it.
  const fixedScheme = ak.tpmPublic?.scheme;
  if (fixedScheme && (fixedScheme.sigAlg !== sig.sigAlg || (fixedScheme.hash !== null && fixedScheme.hash !== sig.hash))) {
    throw new AttestationError(
      'signature_invalid',
      `signature scheme ${sig.sigAlg}/${sig.hash} is not the AK's fixed scheme ${fixedScheme.sigAlg}/${fixedScheme.hash ?? 'any'}`,
    );
  }
  const keyType = ak.key.asymmetricKeyType;
  const isRsa = sig.sigAlg === 'rsassa' || sig.sigAlg === 'rsapss';
  if ((isRsa && keyType !== 'rsa') || (!isRsa && keyType !== 'ec')) {
    throw new AttestationError('signature_invalid', `signature scheme ${sig.sigAlg} does not fit the ${keyType} AK`);
  }
  let ok: boolean;
  try {
    if (sig.sigAlg === 'ecdsa') {
      const curve = ak.key.asymmetricKeyDetails?.namedCurve;
      const size = curve === 'prime256v1' ? 32 : curve === 'secp384r1' ? 48 : curve === 'secp521r1' ? 66 : 0;
      const r = fixed(sig.r, size);
      const s = fixed(sig.s, size);
      if (!size || !r || !s) throw new AttestationError('signature_invalid', 'ECDSA signature does not fit the AK curve');
      ok = cryptoVerify(sig.hash, attest, { key: ak.key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
    } else {
      const padding = sig.sigAlg === 'rsassa' ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_PSS_PADDING;
      // TPMs use salt = hash length (or the maximum on older parts): accept either.
      const opts = { key: ak.key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO };
      ok = cryptoVerify(sig.hash, attest, opts, sig.sig);
    }
  } catch (err) {
    if (err instanceof AttestationError) throw err;
    throw new AttestationError('signature_invalid', `quote signature check failed: ${(err as Error).message}`, { cause: err });
  }
  if (!ok) throw new AttestationError('signature_invalid', `quote signature (${sig.sigAlg}/${sig.hash}) does not verify with the AK`);
}

/** r or s left-padded to the curve size; undefined when it does not fit. */
function fixed(v: Uint8Array, size: number): Buffer | undefined {
  let i = 0;
  while (i < v.length && v[i] === 0) i++;
  const trimmed = v.subarray(i);
  if (trimmed.length > size) return undefined;
  return Buffer.concat([Buffer.alloc(size - trimmed.length), trimmed]);
}

/** Recomputes pcrDigest = H_sig(selected PCRs in selection order, ascending index). */
function checkPcrs(q: TpmsAttestQuote, pcrs: TpmQuoteInput['pcrs'], hash: string): Record<string, string> {
  const bankId = hashAlgId(pcrs.alg);
  const size = digestSize(pcrs.alg);
  const h = createHash(hash);
  const selected: Record<string, string> = Object.create(null);
  for (const sel of q.pcrSelections) {
    if (sel.indices.length === 0) continue;
    if (sel.hashAlg !== bankId) {
      throw new AttestationError('pcr_mismatch', `quote selects the ${algName(sel.hashAlg)} bank but PCR values are for ${pcrs.alg}`);
    }
    for (const i of sel.indices) {
      const value = Object.hasOwn(pcrs.values, i) ? pcrs.values[i] : undefined;
      if (typeof value !== 'string') throw new AttestationError('pcr_mismatch', `PCR ${i} (${pcrs.alg}) is selected but not supplied`);
      if (!/^[0-9a-fA-F]*$/.test(value) || value.length !== size * 2) {
        throw new AttestationError('evidence_malformed', `PCR ${i} (${pcrs.alg}) is not ${size} bytes of hex`);
      }
      selected[String(i)] = value.toLowerCase();
      h.update(Buffer.from(value, 'hex'));
    }
  }
  const digest = h.digest();
  if (!digest.equals(Buffer.from(q.pcrDigest))) {
    throw new AttestationError('pcr_mismatch', `pcrDigest ${hex(q.pcrDigest)} does not match the supplied PCR values (${digest.toString('hex')})`);
  }
  return selected;
}

function checkClock(state: TpmClockState, previous: TpmClockState | undefined): void {
  if (!previous || previous.ak_spki_sha256 !== state.ak_spki_sha256) return;
  const where = `(was reset ${previous.reset_count}/restart ${previous.restart_count}/clock ${previous.clock}, now reset ${state.reset_count}/restart ${state.restart_count}/clock ${state.clock})`;
  if (state.reset_count < previous.reset_count) throw new AttestationError('counter_regression', `TPM resetCount went backwards ${where}`);
  if (state.reset_count === previous.reset_count && state.restart_count < previous.restart_count) {
    throw new AttestationError('counter_regression', `TPM restartCount went backwards ${where}`);
  }
  if (state.clock < previous.clock) throw new AttestationError('counter_regression', `TPM clock went backwards ${where}`);
}

export function verifyTpmQuote(input: TpmQuoteInput, refs: TpmVerifyRefs, now: Date): TpmClaims {
  if (!(input.attest instanceof Uint8Array) || !(input.signature instanceof Uint8Array)) {
    throw new AttestationError('evidence_malformed', 'TPM quote: attest and signature must be bytes');
  }
  if (!input.pcrs || typeof input.pcrs.values !== 'object' || !['sha1', 'sha256', 'sha384'].includes(input.pcrs.alg)) {
    throw new AttestationError('evidence_malformed', 'TPM quote: pcrs must name a sha1/sha256/sha384 bank and values');
  }
  const quote = parseTpmsAttest(input.attest);
  const sig = input.signatureScheme
    ? rawSignature(input.signature, input.signatureScheme)
    : parseTpmtSignature(input.signature);

  const ak = resolveAk(input.ak);
  checkAkTrust(ak, refs.akTrust ?? {}, refs.akCertChain, now);
  checkSignature(ak, input.attest, sig);

  if (refs.expectedExtraData !== undefined && !Buffer.from(quote.extraData).equals(Buffer.from(refs.expectedExtraData))) {
    throw new AttestationError('binding_mismatch', `quote extraData ${hex(quote.extraData)} is not the expected ${hex(refs.expectedExtraData)}`);
  }
  const pcrs = checkPcrs(quote, input.pcrs, sig.hash);

  const akSpki = spkiSha256(ak.key);
  const state: TpmClockState = {
    ak_spki_sha256: akSpki,
    clock: quote.clockInfo.clock,
    reset_count: quote.clockInfo.resetCount,
    restart_count: quote.clockInfo.restartCount,
  };
  checkClock(state, refs.previous);

  return {
    type: 'tpm',
    ak_name: ak.tpmPublic ? hex(ak.tpmPublic.name) : null,
    ak_spki_sha256: akSpki,
    qualified_signer: hex(quote.qualifiedSigner),
    extra_data: hex(quote.extraData),
    clock: {
      clock: quote.clockInfo.clock.toString(),
      reset_count: quote.clockInfo.resetCount,
      restart_count: quote.clockInfo.restartCount,
      safe: quote.clockInfo.safe,
    },
    firmware_version: quote.firmwareVersion.toString(16).padStart(16, '0'),
    pcr_bank: input.pcrs.alg,
    pcrs,
    pcr_digest: hex(quote.pcrDigest),
    signature_scheme: { sig_alg: sig.sigAlg, hash_alg: sig.hash },
    clock_state: state,
  };
}
