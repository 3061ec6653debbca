/**
 * From the config's `attestation:` section to runtime objects: this sidecar's attester, and the
 * trust anchors, collateral cache and reference values its inbound gate verifies with.
 * I/O happens here (reading PEM files, opening watchers), once at start.
 */
import { createPublicKey } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { AttesterConfig, SidecarConfig, VerifierConfig } from '../config/types.js';
import { SidecarError, errorMessage } from '../errors.js';
import { SimAttester, type Attester } from './attester.js';
import { ReferenceValueStore, parseSigningKeysPem } from './reference-values.js';
import { loadSnpAnchors } from './sev-snp/anchors.js';
import { KdsCollateral } from './sev-snp/kds.js';
import { TpmEvidenceAttester } from './tpm/evidence.js';
import { TsmEvidenceAttester } from './tsm/evidence.js';
import type { VerifierTrust } from './verifier.js';
import type { Logger } from '../lib/log.js';

function read(file: string, what: string, config: SidecarConfig): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SidecarError('config_invalid', `${config.file}: ${what}: cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** PEM texts of a file, or of every *.pem/*.crt/*.cer in a directory. */
function pemSources(p: string, what: string, config: SidecarConfig): string[] {
  let isDir = false;
  try {
    isDir = statSync(p).isDirectory();
  } catch (err) {
    throw new SidecarError('config_invalid', `${config.file}: ${what}: cannot read ${p}: ${errorMessage(err)}`);
  }
  if (!isDir) return [read(p, what, config)];
  return readdirSync(p)
    .filter((f) => /\.(pem|crt|cer)$/i.test(f))
    .sort()
    .map((f) => read(path.join(p, f), what, config));
}

export function createAttester(config: SidecarConfig, a: AttesterConfig | undefined = config.attestation?.attester): Attester | undefined {
  if (!a) return undefined;
  switch (a.type) {
    case 'sim':
      return new SimAttester({ ...(a.key ? { keyFile: a.key } : {}), measurement: a.measurement, guestSvn: a.guestSvn, debug: a.debug });
    case 'sev-snp':
    case 'tdx':
      return new TsmEvidenceAttester(a.type, { basePath: a.tsmPath, ...(a.privlevel !== undefined ? { privlevel: a.privlevel } : {}) });
    case 'tpm':
      return new TpmEvidenceAttester({
        endpoint: a.address ? { host: a.address.host, port: a.address.port } : { device: a.device ?? '/dev/tpmrm0' },
        pcrs: { alg: a.pcrBank, indices: a.pcrs },
        algorithm: a.keyAlgorithm,
      });
  }
}

export interface VerifierSetup {
  trust: VerifierTrust;
  referenceValues?: ReferenceValueStore;
  close(): void;
}

export async function setupVerifier(config: SidecarConfig, logger?: Logger, v: VerifierConfig | undefined = config.attestation?.verifier): Promise<VerifierSetup> {
  const key = (file: string, what: string) => {
    try {
      return createPublicKey(read(file, what, config));
    } catch (err) {
      if (err instanceof SidecarError) throw err;
      throw new SidecarError('config_invalid', `${config.file}: ${what}: ${file} is not a PEM public key: ${errorMessage(err)}`);
    }
  };
  const trust: VerifierTrust = { simKeys: (v?.simKeys ?? []).map((f) => key(f, 'attestation.verifier.sim_keys')) };
  if (v && v.snpAnchors.length > 0) {
    trust.snpAnchors = loadSnpAnchors(v.snpAnchors.flatMap((p) => pemSources(p, 'attestation.verifier.snp_anchors', config)));
  }
  if (v && (v.tpmAkNames.length > 0 || v.tpmAkCas.length > 0)) {
    trust.tpm = {
      names: v.tpmAkNames.map((hex) => Buffer.from(hex, 'hex')),
      caCerts: v.tpmAkCas.flatMap((p) => pemSources(p, 'attestation.verifier.tpm_ak_cas', config)),
    };
  }
  if (v?.kds) {
    const kds = new KdsCollateral({
      cacheDir: v.kds.cacheDir,
      offline: v.kds.offline,
      ...(v.kds.baseUrl ? { baseUrl: v.kds.baseUrl } : {}),
      ...(v.kds.product ? { product: v.kds.product } : {}),
      ...(trust.snpAnchors ? { anchors: trust.snpAnchors } : {}),
      ...(logger ? { logger } : {}),
    });
    await kds.init();
    await kds.load();
    trust.kds = kds;
  }
  let referenceValues: ReferenceValueStore | undefined;
  if (v?.referenceValues) {
    const rv = v.referenceValues;
    referenceValues = await ReferenceValueStore.open({
      files: rv.files,
      keys: rv.signingKeys ? parseSigningKeysPem(read(rv.signingKeys, 'attestation.verifier.reference_values.signing_keys', config), rv.signingKeys) : [],
      requireSignature: rv.requireSignature,
      ...(logger ? { logger } : {}),
    });
  }
  return { trust, ...(referenceValues ? { referenceValues } : {}), close: () => referenceValues?.close() };
}
