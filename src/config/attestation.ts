/** The `attestation:` section of a sidecar config: this sidecar's attester and its verifier trust. */
import { ATTESTERS, TRUST_SECTIONS, type AttesterConfig } from '../attestation/kinds.js';
import { intIn } from '../attestation/config-read.js';
import type { AttestationConfig, VerifierConfig } from '../attestation/config.js';
import { readPath } from '../lib/fields.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';

/** Keys of `attestation.attester`: `type` and every attester kind's own (each kind refuses the others'). */
const ATTESTER_KEYS = ['type', ...new Set([...ATTESTERS.values()].flatMap((a) => a.keys))];
/** Keys of `attestation.verifier`: every kind's trust keys, then the kind-independent ones. */
const VERIFIER_KEYS = [...TRUST_SECTIONS.flatMap((t) => t.keys), 'reference_values', 'cache_size'];
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
  const am = reader.map(field, ATTESTER_KEYS);
  if (!am) return undefined;
  const typeField = am.require('type');
  const type = typeField && reader.string(typeField);
  if (!typeField || type === undefined) return undefined;
  const section = ATTESTERS.get(type);
  if (!section) {
    reader.reportField(typeField, `unknown attester type '${type}' (one of ${[...ATTESTERS.keys()].join(', ')})`);
    return undefined;
  }
  for (const k of am.keys()) if (k !== 'type' && !section.keys.includes(k)) reader.reportField(am.get(k)!, `does not apply to attester type '${type}'`);
  return section.read(reader, am, baseDir, type) as AttesterConfig | undefined;
}

function readVerifier(reader: YamlReader, field: Field, baseDir: string): VerifierConfig | undefined {
  const vm = reader.map(field, VERIFIER_KEYS);
  if (!vm) return undefined;
  const out = Object.assign(
    { cacheSize: intIn(reader, vm, 'cache_size', 1, 10_000_000) ?? 10_000 },
    ...TRUST_SECTIONS.map((section) => section.read(reader, vm, baseDir)),
  ) as VerifierConfig;
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
      const filePath = readPath(reader, f, baseDir);
      if (filePath) files[name] = filePath;
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
