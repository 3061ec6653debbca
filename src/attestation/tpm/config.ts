/**
 * TPM configuration: the trusted attestation keys under attestation.verifier (`tpm_ak_names`,
 * `tpm_ak_cas`) and this sidecar's own TPM under attestation.attester.
 */
import { readPath } from '../../lib/fields.js';
import { checkListen } from '../../lib/values.js';
import type { MapView, YamlReader } from '../../lib/yaml-reader.js';
import { pathList } from '../config-read.js';
import type { AttesterSection, TrustSection } from '../kind.js';
import { TpmEvidenceAttester } from './evidence.js';

export interface TpmTrustConfig {
  /** Pinned TPM attestation keys by TPM Name (lower-case hex nameAlg || digest) and CAs that certify AKs. */
  tpmAkNames: string[];
  tpmAkCas: string[];
}

export interface TpmTrust {
  /** Trusted TPM attestation keys (pinned by TPM Name) and/or CAs that certify AKs (ak_cert part). */
  tpm: { names?: readonly Uint8Array[]; caCerts?: readonly string[] };
}

/** TPM Name digest size by nameAlg (the Name's first two bytes, hex). */
const TPM_NAME_DIGEST_BYTES = new Map([
  ['0004', 20], // sha1
  ['000b', 32], // sha256
  ['000c', 48], // sha384
  ['000d', 64], // sha512
]);

/**
 * `tpm_ak_names`: TPM Names (hex nameAlg || digest) of trusted AKs. The former `tpm_ak_keys`
 * (PEM public keys) is refused: a key pin does not authenticate the AK's TPMT_PUBLIC.
 */
function tpmAkNames(reader: YamlReader, vm: MapView): string[] {
  const old = vm.get('tpm_ak_keys');
  if (old) {
    reader.reportField(
      old,
      "is no longer supported: a public-key pin does not authenticate the AK's TPMT_PUBLIC (its restricted attribute, " +
        "nameAlg and scheme); pin each AK's TPM Name in 'tpm_ak_names' instead (the ak_name claim, or tpm2_readpublic -n)",
    );
  }
  const f = vm.get('tpm_ak_names');
  const out: string[] = [];
  for (const item of (f && reader.list(f)) ?? []) {
    const name = reader.hex(item, 'TPM Name (hex nameAlg || digest)');
    if (name === undefined) continue;
    const size = TPM_NAME_DIGEST_BYTES.get(name.slice(0, 4));
    if (size === undefined || name.length !== 4 + 2 * size) {
      reader.reportField(item, 'must be a TPM Name: 0004 + 20 bytes (sha1), 000b + 32 (sha256), 000c + 48 (sha384) or 000d + 64 (sha512), in hex');
      continue;
    }
    out.push(name);
  }
  return out;
}

export const TPM_TRUST: TrustSection<TpmTrustConfig, Partial<TpmTrust>> = {
  keys: ['tpm_ak_names', 'tpm_ak_keys', 'tpm_ak_cas'],
  defaults: { tpmAkNames: [], tpmAkCas: [] },
  read: (reader, vm, baseDir) => ({ tpmAkNames: tpmAkNames(reader, vm), tpmAkCas: pathList(reader, vm, 'tpm_ak_cas', baseDir) }),
  load(config, ctx) {
    if (config.tpmAkNames.length === 0 && config.tpmAkCas.length === 0) return {};
    return {
      tpm: {
        names: config.tpmAkNames.map((hex) => Buffer.from(hex, 'hex')),
        caCerts: config.tpmAkCas.flatMap((p) => ctx.pemSources(p, 'attestation.verifier.tpm_ak_cas')),
      },
    };
  },
};

export interface TpmAttesterConfig {
  type: 'tpm';
  device?: string;
  address?: { host: string; port: number };
  pcrBank: 'sha1' | 'sha256' | 'sha384';
  pcrs: number[];
  keyAlgorithm: 'ecc-p256' | 'rsa-2048';
}

export const TPM_ATTESTER: AttesterSection<TpmAttesterConfig> = {
  keys: ['device', 'address', 'pcr_bank', 'pcrs', 'key_algorithm'],
  read(reader, am, baseDir) {
    const deviceField = am.get('device');
    const addressField = am.get('address');
    if (deviceField && addressField) reader.reportField(addressField, "give either 'device' or 'address', not both");
    const device = deviceField ? readPath(reader, deviceField, baseDir) : addressField ? undefined : '/dev/tpmrm0';
    let address: { host: string; port: number } | undefined;
    if (addressField) {
      const addressText = reader.string(addressField);
      const l = addressText === undefined ? undefined : checkListen(addressText);
      if (l && !l.ok) reader.reportField(addressField, l.error);
      else if (l?.ok) address = l.value;
    }
    const bankField = am.get('pcr_bank');
    const bank = bankField ? reader.string(bankField) : 'sha256';
    if (bankField && bank !== undefined && !['sha1', 'sha256', 'sha384'].includes(bank)) reader.reportField(bankField, 'must be sha1, sha256 or sha384');
    const pcrsField = am.get('pcrs');
    const pcrs = pcrsField ? (reader.list(pcrsField) ?? []).map((f) => reader.int(f, { min: 0, max: 23 })).filter((n): n is number => n !== undefined) : [0, 1, 2, 3, 4, 5, 6, 7];
    const algField = am.get('key_algorithm');
    const alg = algField ? reader.string(algField) : 'ecc-p256';
    if (algField && alg !== undefined && alg !== 'ecc-p256' && alg !== 'rsa-2048') reader.reportField(algField, 'must be ecc-p256 or rsa-2048');
    return {
      type: 'tpm',
      ...(device ? { device } : {}),
      ...(address ? { address } : {}),
      pcrBank: (bank ?? 'sha256') as 'sha256',
      pcrs,
      keyAlgorithm: (alg ?? 'ecc-p256') as 'ecc-p256',
    };
  },
  create: (a) =>
    new TpmEvidenceAttester({
      endpoint: a.address ? { host: a.address.host, port: a.address.port } : { device: a.device ?? '/dev/tpmrm0' },
      pcrs: { alg: a.pcrBank, indices: a.pcrs },
      algorithm: a.keyAlgorithm,
    }),
};
