/** The sim evidence kind: a software-signed report for development and tests; it proves nothing about hardware. */
import type { KeyObject } from 'node:crypto';
import { readPath } from '../../lib/fields.js';
import { SimAttester } from './attester.js';
import { bindingUserData, expectBinding } from '../binding.js';
import { intIn, pathList } from '../config-read.js';
import type { AttesterSection, EvidenceKind, TrustSection } from '../kind.js';
import { describeSimReport, SIM_MAGIC, verifySimReport } from './report.js';

export interface SimTrust {
  /** Trusted `sim` report signing keys. */
  simKeys: readonly KeyObject[];
}

export interface SimTrustConfig {
  /** PEM files of trusted `sim` report signing keys (SPKI). Development and tests only. */
  simKeys: string[];
}

const SIM_TRUST: TrustSection<SimTrustConfig, SimTrust> = {
  keys: ['sim_keys'],
  defaults: { simKeys: [] },
  read: (reader, vm, baseDir) => ({ simKeys: pathList(reader, vm, 'sim_keys', baseDir) }),
  load: (c, ctx) => ({ simKeys: c.simKeys.map((f) => ctx.publicKey(f, 'attestation.verifier.sim_keys')) }),
};

export interface SimAttesterConfig {
  type: 'sim';
  /** PKCS#8 PEM private key file; absent: a fresh in-memory key (then no peer can trust it unless told). */
  key?: string;
  measurement: string;
  guestSvn: number;
  debug: boolean;
}

const SIM_ATTESTER: AttesterSection<SimAttesterConfig> = {
  keys: ['key', 'measurement', 'guest_svn', 'debug'],
  read(reader, am, baseDir) {
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
      guestSvn: intIn(reader, am, 'guest_svn', 0, 0xffffffff) ?? 1,
      debug: (am.get('debug') && reader.bool(am.get('debug')!)) ?? false,
      ...(key ? { key } : {}),
    };
  },
  create: (a) => new SimAttester({ ...(a.key ? { keyFile: a.key } : {}), measurement: a.measurement, guestSvn: a.guestSvn, debug: a.debug }),
};

/** The sim report's TCB uses the SEV-SNP Milan/Genoa TCB_VERSION layout (little-endian u64). */
function simTcb(hex16: string): Record<string, number> {
  const v = BigInt(`0x${hex16}`);
  const byte = (i: number) => Number((v >> BigInt(8 * i)) & 0xffn);
  return { bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7) };
}

export const simKind: EvidenceKind<'sim', SimTrust, SimTrustConfig, SimAttesterConfig> = {
  name: 'sim',
  parts: { report: { mediaType: 'application/vnd.attest-sidecar.sim-report', required: true, maxBytes: 1024 } },
  trust: SIM_TRUST,
  attester: SIM_ATTESTER,
  verify({ parts, trust, binding, now }) {
    const claims = verifySimReport(parts.report!, { keys: trust.simKeys ?? [] }, now);
    expectBinding(claims.report_data, bindingUserData(binding.spki, binding.nonce));
    return {
      claims: { ...claims },
      normalized: {
        evidence_type: 'sim',
        tee_type: 'sim',
        measurement: claims.measurement,
        guest_svn: claims.guest_svn,
        debug: claims.debug,
        tcb: simTcb(claims.tcb),
        chip_id: claims.chip_id,
        issued_at: claims.issued_at,
      },
    };
  },
  describe: (bytes) => ({ ...describeSimReport(bytes), verified: false }),
  describeParts: (parts) => ({ report: describeSimReport(parts.report!) }),
  sniff: (bytes) => bytes.length >= 4 && bytes.readUInt32BE(0) === SIM_MAGIC,
};
