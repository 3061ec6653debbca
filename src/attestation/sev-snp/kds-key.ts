/**
 * AMD KDS lookup keys: what identifies one VCEK (product, hardware id, certified TCB), derived
 * either from an attestation report or from a VCEK certificate, plus the KDS URL paths.
 *
 * Pure. The same key comes out of a report and of the VCEK that signed it, which is how the
 * cache ties a file on disk (or a KDS answer) to the report asking for it.
 *
 * KDS interface (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
 * Specification", 57230):
 *   /vcek/v1/{Milan|Genoa}/{64-byte chip id hex}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=   (DER)
 *   /vcek/v1/Turin/{first 8 chip id bytes hex}?fmcSPL=&blSPL=&teeSPL=&snpSPL=&ucodeSPL=
 *   /vcek/v1/{product}/cert_chain, /vlek/v1/{product}/cert_chain   (PEM: ASK/ASVK then ARK)
 */
import { createHash } from 'node:crypto';
import { AttestationError, hex } from '../types.js';
import type { SnpCertTcb, SnpEndorsementCert } from './certs.js';
import { parseSnpReport, type SnpReport } from './report.js';
import { decodeTcb, productFromCpuid, resolveProduct, type SnpProduct } from './tcb.js';

export interface VcekKey {
  product: SnpProduct;
  /** 64 bytes (Milan, Genoa) or 8 bytes (Turin). */
  hwId: Uint8Array;
  tcb: SnpCertTcb;
  /** Canonical text form, e.g. "Milan:3ac3…5d:bl2.tee0.snp5.ucode68". */
  id: string;
}

/** Turin KDS keys (and Turin VCEK hwIDs) use only the first 8 bytes of CHIP_ID. */
function hwIdLength(product: SnpProduct): number {
  return product === 'Turin' ? 8 : 64;
}

function makeKey(product: SnpProduct, hwId: Uint8Array, tcb: SnpCertTcb): VcekKey {
  const spl = `bl${tcb.bootloader}.tee${tcb.tee}.snp${tcb.snp}.ucode${tcb.microcode}`;
  const fmc = product === 'Turin' ? `.fmc${tcb.fmc ?? 0}` : '';
  return { product, hwId, tcb, id: `${product}:${hex(hwId)}:${spl}${fmc}` };
}

/**
 * The key of the VCEK that must have signed `report`: product from the report's CPUID (v3+)
 * and/or the configured product (they must agree), hwID from CHIP_ID, TCB from REPORTED_TCB.
 * Throws AttestationError: evidence_malformed / evidence_unsupported (bad report),
 * collateral_missing (VLEK-signed, masked chip id, or no way to tell the product).
 */
export function vcekKeyForReport(reportBytes: Uint8Array, configured?: SnpProduct): VcekKey {
  const r: SnpReport = parseSnpReport(reportBytes);
  if (r.signingKey !== 'vcek') {
    throw new AttestationError('collateral_missing', 'the report is signed by a VLEK: KDS serves no per-chip VLEK');
  }
  if (r.maskChipKey) {
    throw new AttestationError('collateral_missing', 'the report has MASK_CHIP_KEY set: no chip id to look up a VCEK by');
  }
  const product = resolveProduct({
    configured,
    report: r.cpuid ? productFromCpuid(r.cpuid) : undefined,
  });
  const hwId = r.chipId.slice(0, hwIdLength(product));
  if (hwId.every((b) => b === 0)) {
    throw new AttestationError('collateral_missing', 'the report chip id is all zero: no VCEK to look up');
  }
  const t = decodeTcb(r.reportedTcb, product);
  const tcb: SnpCertTcb = { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode };
  if (product === 'Turin') tcb.fmc = t.fmc ?? 0;
  return makeKey(product, hwId, tcb);
}

/** The key a parsed VCEK certifies. Throws evidence_malformed for a VLEK or a VCEK without hwID. */
export function vcekKeyForCert(cert: SnpEndorsementCert): VcekKey {
  if (cert.kind !== 'vcek' || !cert.hwId) {
    throw new AttestationError('evidence_malformed', `expected a VCEK, got a ${cert.kind.toUpperCase()}`);
  }
  return makeKey(cert.product, cert.hwId, cert.tcb);
}

/** The cache file name for a key: SHA-256 of its canonical id, so any key gives a safe name. */
export function vcekCacheFileName(key: VcekKey): string {
  return `${createHash('sha256').update(key.id).digest('hex')}.der`;
}

export const VCEK_CACHE_FILE = /^[0-9a-f]{64}\.der$/;

/** Path and query of the KDS VCEK request for `key` (decimal SPLs, lower-case hex hwID). */
export function kdsVcekPath(key: VcekKey): string {
  const t = key.tcb;
  const spls = `blSPL=${t.bootloader}&teeSPL=${t.tee}&snpSPL=${t.snp}&ucodeSPL=${t.microcode}`;
  const query = key.product === 'Turin' ? `fmcSPL=${t.fmc ?? 0}&${spls}` : spls;
  return `/vcek/v1/${key.product}/${hex(key.hwId)}?${query}`;
}

/** Path of the KDS certificate chain (PEM, ASK or ASVK first, then ARK) for a product. */
export function kdsCertChainPath(product: SnpProduct, kind: 'vcek' | 'vlek'): string {
  return `/${kind}/v1/${product}/cert_chain`;
}
