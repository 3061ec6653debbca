/** The `attestation:` section of a sidecar config: this sidecar's attester and its verifier trust. */
import type { AttestationConfig, AttesterConfig, VerifierConfig } from './types.js';
import { readPath } from '../lib/fields.js';
import { checkListen } from '../lib/values.js';
import type { Field, MapView, YamlReader } from '../lib/yaml-reader.js';

const ATTESTER_TYPES = ['sim', 'sev-snp', 'tdx', 'tpm'];
/** Reference-values environment names (policies refer to them); ReferenceValueStore checks the same. */
const ENVIRONMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function readAttestation(reader: YamlReader, field: Field, baseDir: string): AttestationConfig | undefined {
  const m = reader.map(field, ['attester', 'verifier']);
  if (!m) return undefined;
  const out: AttestationConfig = {};
  const a = m.get('attester');
  const attester = a && readAttester(reader, a, baseDir);
  if (attester) out.attester = attester;
  const v = m.get('verifier');
  const verifier = v && readVerifier(reader, v, baseDir);
  if (verifier) out.verifier = verifier;
  return out;
}

function readAttester(reader: YamlReader, field: Field, baseDir: string): AttesterConfig | undefined {
  const am = reader.map(field, ['type', 'key', 'measurement', 'guest_svn', 'debug', 'tsm_path', 'privlevel', 'device', 'address', 'pcr_bank', 'pcrs', 'key_algorithm']);
  if (!am) return undefined;
  const typeField = am.require('type');
  const type = typeField && reader.string(typeField);
  if (!typeField || type === undefined) return undefined;
  if (!ATTESTER_TYPES.includes(type)) {
    reader.reportField(typeField, `unknown attester type '${type}' (one of ${ATTESTER_TYPES.join(', ')})`);
    return undefined;
  }
  const only = (allowed: string[]) => {
    for (const k of am.keys()) if (k !== 'type' && !allowed.includes(k)) reader.reportField(am.get(k)!, `does not apply to attester type '${type}'`);
  };
  if (type === 'sim') {
    only(['key', 'measurement', 'guest_svn', 'debug']);
    const measurementField = am.require('measurement');
    const measurement = measurementField && reader.hex(measurementField, 'measurement');
    if (measurementField && measurement !== undefined && measurement.length !== 96) {
      reader.reportField(measurementField, `must be 48 bytes (96 hex digits), got ${measurement.length / 2} bytes`);
    }
    const keyField = am.get('key');
    const key = keyField && readPath(reader, keyField, baseDir);
    return {
      type: 'sim',
      measurement: measurement ?? '',
      guestSvn: int(reader, am, 'guest_svn', 0, 0xffffffff) ?? 1,
      debug: (am.get('debug') && reader.bool(am.get('debug')!)) ?? false,
      ...(key ? { key } : {}),
    };
  }
  if (type === 'sev-snp' || type === 'tdx') {
    only(['tsm_path', 'privlevel']);
    const p = am.get('tsm_path');
    const tsmPath = (p && readPath(reader, p, baseDir)) ?? '/sys/kernel/config/tsm/report';
    const privlevel = int(reader, am, 'privlevel', 0, 3);
    return { type, tsmPath, ...(privlevel !== undefined ? { privlevel } : {}) };
  }
  only(['device', 'address', 'pcr_bank', 'pcrs', 'key_algorithm']);
  const deviceField = am.get('device');
  const addressField = am.get('address');
  if (deviceField && addressField) reader.reportField(addressField, "give either 'device' or 'address', not both");
  const device = deviceField ? readPath(reader, deviceField, baseDir) : addressField ? undefined : '/dev/tpmrm0';
  let address: { host: string; port: number } | undefined;
  if (addressField) {
    const s = reader.string(addressField);
    const l = s === undefined ? undefined : checkListen(s);
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

function readVerifier(reader: YamlReader, field: Field, baseDir: string): VerifierConfig | undefined {
  const vm = reader.map(field, ['sim_keys', 'snp_anchors', 'kds', 'tpm_ak_names', 'tpm_ak_keys', 'tpm_ak_cas', 'reference_values', 'cache_size']);
  if (!vm) return undefined;
  const paths = (key: string) => {
    const f = vm.get(key);
    return f ? (reader.list(f) ?? []).map((x) => readPath(reader, x, baseDir)).filter((p): p is string => p !== undefined) : [];
  };
  const out: VerifierConfig = {
    simKeys: paths('sim_keys'),
    snpAnchors: paths('snp_anchors'),
    tpmAkNames: tpmAkNames(reader, vm),
    tpmAkCas: paths('tpm_ak_cas'),
    cacheSize: int(reader, vm, 'cache_size', 1, 10_000_000) ?? 10_000,
  };
  const kdsField = vm.get('kds');
  const km = kdsField && reader.map(kdsField, ['cache_dir', 'offline', 'base_url', 'product']);
  if (km) {
    const dirField = km.require('cache_dir');
    const cacheDir = dirField && readPath(reader, dirField, baseDir);
    const offlineField = km.get('offline');
    const baseField = km.get('base_url');
    const productField = km.get('product');
    const product = productField && reader.string(productField);
    if (productField && product !== undefined && !['Milan', 'Genoa', 'Turin'].includes(product)) reader.reportField(productField, 'must be Milan, Genoa or Turin');
    if (cacheDir) {
      out.kds = {
        cacheDir,
        offline: (offlineField && reader.bool(offlineField)) ?? false,
        ...(baseField && reader.string(baseField) ? { baseUrl: reader.string(baseField)! } : {}),
        ...(product ? { product: product as 'Milan' } : {}),
      };
    }
  }
  const rvField = vm.get('reference_values');
  const rm = rvField && reader.map(rvField, ['files', 'signing_keys', 'require_signature']);
  if (rm) {
    const filesField = rm.require('files');
    const fm = filesField && reader.map(filesField, null);
    // Environment names come from the file: a null prototype keeps '__proto__' a name, not a setter.
    const files: Record<string, string> = Object.create(null);
    for (const name of fm?.keys() ?? []) {
      const f = fm!.get(name)!;
      if (!ENVIRONMENT_NAME.test(name)) {
        reader.report(f.keyNode, f.path, `'${name}' is not an environment name (letters, digits, '.', '_', '-'; a letter or digit first)`);
        continue;
      }
      const p = readPath(reader, f, baseDir);
      if (p) files[name] = p;
    }
    const keysField = rm.get('signing_keys');
    const signingKeys = keysField && readPath(reader, keysField, baseDir);
    const reqField = rm.get('require_signature');
    const requireSignature = (reqField && reader.bool(reqField)) ?? signingKeys !== undefined;
    if (requireSignature && !signingKeys) reader.reportField(reqField ?? rvField!, "require_signature needs 'signing_keys'");
    out.referenceValues = { files, requireSignature, ...(signingKeys ? { signingKeys } : {}) };
  }
  return out;
}

function int(reader: YamlReader, m: MapView, key: string, min: number, max: number): number | undefined {
  const f = m.get(key);
  return f ? reader.int(f, { min, max }) : undefined;
}
