/**
 * From the config's `attestation:` section to runtime objects: this sidecar's attester, and the
 * trust anchors, collateral cache and reference values its inbound gate verifies with.
 * I/O happens here (reading PEM files, opening watchers), once at start.
 */
import { createPublicKey } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { SidecarError, errorMessage } from '../errors.js';
import type { Attester } from './attester.js';
import type { AttestationConfig, VerifierConfig } from './config.js';
import { ATTESTERS, TRUST_SECTIONS, type AttesterConfig, type VerifierTrust } from './kinds.js';
import type { TrustLoadContext } from './kind.js';
import { ReferenceValueStore } from './reference-values.js';
import { parseSigningKeysPem } from './reference-values-signature.js';
import type { Logger } from '../lib/log.js';

/** What setup reads of the sidecar config: the file (for messages) and its attestation section. */
type SetupConfig = { readonly file: string; readonly attestation?: AttestationConfig | undefined };

function read(file: string, what: string, config: SetupConfig): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SidecarError('config_invalid', `${config.file}: ${what}: cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** PEM texts of a file, or of every *.pem/*.crt/*.cer in a directory. */
function pemSources(location: string, what: string, config: SetupConfig): string[] {
  let isDir = false;
  try {
    isDir = statSync(location).isDirectory();
  } catch (err) {
    throw new SidecarError('config_invalid', `${config.file}: ${what}: cannot read ${location}: ${errorMessage(err)}`);
  }
  if (!isDir) return [read(location, what, config)];
  return readdirSync(location)
    .filter((f) => /\.(pem|crt|cer)$/i.test(f))
    .sort()
    .map((f) => read(path.join(location, f), what, config));
}

export function createAttester(config: SetupConfig, a: AttesterConfig | undefined = config.attestation?.attester): Attester | undefined {
  if (!a) return undefined;
  const section = ATTESTERS.get(a.type);
  // The config reader accepts only these types: a miss here is a config built by hand.
  if (!section) throw new SidecarError('config_invalid', `${config.file}: attestation.attester.type: unknown attester type '${a.type}'`);
  return section.create(a);
}

export interface VerifierSetup {
  trust: VerifierTrust;
  referenceValues?: ReferenceValueStore;
  close(): void;
}

export async function setupVerifier(config: SetupConfig, logger?: Logger, v: VerifierConfig | undefined = config.attestation?.verifier): Promise<VerifierSetup> {
  const ctx: TrustLoadContext = {
    ...(logger ? { logger } : {}),
    pemSources: (p, what) => pemSources(p, what, config),
    publicKey: (file, what) => {
      try {
        return createPublicKey(read(file, what, config));
      } catch (err) {
        if (err instanceof SidecarError) throw err;
        throw new SidecarError('config_invalid', `${config.file}: ${what}: ${file} is not a PEM public key: ${errorMessage(err)}`);
      }
    },
  };
  const trust: VerifierTrust = {};
  // Each section once, in list order; without a verifier section every kind loads its defaults.
  for (const section of TRUST_SECTIONS) Object.assign(trust, await section.load(v ?? section.defaults, ctx));
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
