/** The tpm evidence kind: a TPM 2.0 quote over PCRs, signed by an attestation key this sidecar trusts. */
import { bindingUserData } from '../binding.js';
import type { EvidenceKind } from '../kind.js';
import { AttestationError } from '../types.js';
import { resolveAk, spkiSha256 } from './ak.js';
import { TPM_GENERATED_VALUE } from './constants.js';
import { TPM_ATTESTER, TPM_TRUST, type TpmAttesterConfig, type TpmTrust, type TpmTrustConfig } from './config.js';
import { decodePcrs } from './evidence.js';
import { describeTpmQuote, verifyTpmQuote, type TpmClockState } from './verify.js';

const CERT_PART = { mediaType: 'application/pkix-cert', required: false, maxBytes: 4096 } as const;

/**
 * The last clock/reset counters seen for an attestation key are remembered by the caller under
 * this key, so that a replayed older quote is refused (counter_regression). Shared with every
 * kind that carries a TPM quote.
 */
export function tpmClockKey(akSpkiSha256Hex: string): string {
  return `tpm-clock:${akSpkiSha256Hex}`;
}

export function recallTpmClock(recall: (key: string) => unknown, akSpkiSha256Hex: string): TpmClockState | undefined {
  return recall(tpmClockKey(akSpkiSha256Hex)) as TpmClockState | undefined;
}

/** `{"0": "hex", ...}` (as the conformance files have it): the bank follows from the digest length. */
function guessPcrs(values: Record<string, string>) {
  const len = Object.values(values)[0]?.length ?? 64;
  const alg = len === 40 ? 'sha1' : len === 96 ? 'sha384' : 'sha256';
  return decodePcrs(Buffer.from(JSON.stringify({ alg, values })));
}

export const tpmKind: EvidenceKind<'tpm', TpmTrust, TpmTrustConfig, TpmAttesterConfig> = {
  name: 'tpm',
  parts: {
    attest: { mediaType: 'application/vnd.tcg.tpms-attest', required: true, maxBytes: 1024 },
    signature: { mediaType: 'application/vnd.tcg.tpmt-signature', required: true, maxBytes: 1024 },
    pcrs: { mediaType: 'application/json', required: true, maxBytes: 4096 },
    ak: { mediaType: 'application/vnd.tcg.tpmt-public', required: true, maxBytes: 1024 },
    ak_cert: CERT_PART,
  },
  trust: TPM_TRUST,
  attester: TPM_ATTESTER,
  verify({ parts, trust, binding, now, recall }) {
    const tpm = trust.tpm;
    if (!tpm || ((tpm.names?.length ?? 0) === 0 && (tpm.caCerts?.length ?? 0) === 0)) {
      throw new AttestationError('collateral_missing', 'no trusted TPM attestation key names or AK CAs are configured on this sidecar');
    }
    const akHex = spkiSha256(resolveAk(parts.ak!).key);
    const previous = recallTpmClock(recall, akHex);
    const claims = verifyTpmQuote(
      { attest: parts.attest!, signature: parts.signature!, pcrs: decodePcrs(parts.pcrs!), ak: parts.ak! },
      {
        expectedExtraData: bindingUserData(binding.spki, binding.nonce, 32),
        akTrust: { ...(tpm.names ? { names: [...tpm.names] } : {}), ...(tpm.caCerts ? { caCerts: [...tpm.caCerts] } : {}) },
        ...(parts.ak_cert ? { akCertChain: [`-----BEGIN CERTIFICATE-----\n${parts.ak_cert.toString('base64')}\n-----END CERTIFICATE-----\n`] } : {}),
        ...(previous ? { previous } : {}),
      },
      now,
    );
    const { clock_state: clock, ...json } = claims;
    return {
      claims: { ...json },
      normalized: { evidence_type: 'tpm', tee_type: 'tpm', pcrs: claims.pcrs, tpm_ak_spki_sha256: claims.ak_spki_sha256 },
      remember: { key: tpmClockKey(akHex), value: clock },
    };
  },
  describe: (bytes) => ({ ...describeTpmQuote(bytes), verified: false }),
  sniff: (bytes) => bytes.length >= 4 && bytes.readUInt32BE(0) === TPM_GENERATED_VALUE,
  offline: {
    options: { signature: { type: 'string' }, pcrs: { type: 'string' }, ak: { type: 'string' }, nonce: { type: 'string' } },
    verify(bytes, flags, now, files) {
      const { signature, pcrs: pcrsFile, ak: akFile, nonce } = flags as Record<string, string | undefined>;
      if (!signature || !pcrsFile || !akFile) {
        return { usage: 'attest-sidecar verify-evidence --type tpm: --signature FILE --pcrs FILE --ak FILE are required\n' };
      }
      const pcrsDoc = JSON.parse(files.read(pcrsFile).toString('utf8')) as Record<string, unknown>;
      const pcrs = 'alg' in pcrsDoc ? decodePcrs(Buffer.from(JSON.stringify(pcrsDoc))) : guessPcrs(pcrsDoc as Record<string, string>);
      const akBytes = files.read(akFile);
      const ak = akBytes.toString('latin1').includes('-----BEGIN') ? akBytes.toString('utf8') : akBytes;
      // The operator names the AK: a TPMT_PUBLIC is trusted by its Name, a PEM key or certificate by its key.
      const given = resolveAk(ak);
      const akTrust = given.tpmPublic ? { names: [given.tpmPublic.name] } : { keys: [given.key] };
      const quoteClaims = verifyTpmQuote(
        { attest: bytes, signature: files.evidence(signature), pcrs, ak },
        { akTrust, ...(nonce !== undefined ? { expectedExtraData: Buffer.from(nonce, 'hex') } : {}) },
        now,
      );
      const { clock_state: _s, ...json } = quoteClaims;
      return {
        claims: { ...json, ak_trust: 'the AK given with --ak (pin its ak_name in tpm_ak_names)' },
        normalized: { evidence_type: 'tpm', tee_type: 'tpm', pcrs: quoteClaims.pcrs, tpm_ak_spki_sha256: quoteClaims.ak_spki_sha256 },
      };
    },
  },
};
