/** The `attestation:` section of a sidecar config. */
import type { AttestationConfig, SimAttesterConfig } from './types.js';
import { readPath } from './fields.js';
import type { Field, YamlReader } from './yaml-reader.js';

export function readAttestation(reader: YamlReader, field: Field, baseDir: string): AttestationConfig | undefined {
  const m = reader.map(field, ['attester', 'verifier']);
  if (!m) return undefined;
  const out: AttestationConfig = {};
  const a = m.get('attester');
  if (a) {
    const am = reader.map(a, ['type', 'key', 'measurement', 'guest_svn', 'debug']);
    if (am) {
      const typeField = am.require('type');
      const type = typeField && reader.string(typeField);
      if (typeField && type !== undefined && type !== 'sim') {
        reader.reportField(typeField, `attester type '${type}' is not available yet (supported: sim)`);
      }
      const keyField = am.get('key');
      const measurementField = am.require('measurement');
      const measurement = measurementField && reader.hex(measurementField, 'measurement');
      if (measurementField && measurement !== undefined && measurement.length !== 96) {
        reader.reportField(measurementField, `must be 48 bytes (96 hex digits), got ${measurement.length / 2} bytes`);
      }
      const svnField = am.get('guest_svn');
      const debugField = am.get('debug');
      const sim: SimAttesterConfig = {
        type: 'sim',
        measurement: measurement ?? '',
        guestSvn: (svnField && reader.int(svnField, { min: 0, max: 0xffffffff })) ?? 1,
        debug: (debugField && reader.bool(debugField)) ?? false,
      };
      const key = keyField && readPath(reader, keyField, baseDir);
      if (key) sim.key = key;
      out.attester = sim;
    }
  }
  const v = m.get('verifier');
  if (v) {
    const vm = reader.map(v, ['sim_keys', 'cache_size']);
    if (vm) {
      const keysField = vm.get('sim_keys');
      const keys = keysField ? (reader.list(keysField) ?? []).map((f) => readPath(reader, f, baseDir)).filter((p): p is string => p !== undefined) : [];
      const sizeField = vm.get('cache_size');
      out.verifier = { simKeys: keys, cacheSize: (sizeField && reader.int(sizeField, { min: 1, max: 10_000_000 })) ?? 10_000 };
    }
  }
  return out;
}
