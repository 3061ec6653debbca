/**
 * TCB_VERSION decoding and product identification.
 *
 * The 8-byte TCB_VERSION layout differs per product (SEV-SNP ABI spec, "TCB_VERSION"):
 *   Milan/Genoa: byte0 bootloader, byte1 tee, bytes2-5 reserved, byte6 snp, byte7 microcode
 *   Turin:       byte0 fmc, byte1 bootloader, byte2 tee, byte3 snp, bytes4-6 reserved, byte7 microcode
 * so the product must be known before a TCB can be read or compared with a VCEK.
 */
import { AttestationError } from '../types.js';
import type { SnpCpuid } from './report.js';

export type SnpProduct = 'Milan' | 'Genoa' | 'Turin';
export const SNP_PRODUCTS: readonly SnpProduct[] = ['Milan', 'Genoa', 'Turin'];

export interface SnpTcb {
  /** The u64 as 16 hex digits, most significant byte first (e.g. 4405000000000002). */
  raw: string;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  /** Turin only. */
  fmc?: number;
}

/** The TCB components a VCEK/VLEK certifies, named as in claims and error messages. */
export type SnpTcbComponent = 'fmc' | 'bootloader' | 'tee' | 'snp' | 'microcode';

export function tcbComponents(product: SnpProduct): readonly SnpTcbComponent[] {
  return product === 'Turin'
    ? ['fmc', 'bootloader', 'tee', 'snp', 'microcode']
    : ['bootloader', 'tee', 'snp', 'microcode'];
}

/** Decodes 8 little-endian TCB_VERSION bytes with the product's layout. */
export function decodeTcb(raw: Uint8Array, product: SnpProduct): SnpTcb {
  if (raw.byteLength !== 8) {
    throw new AttestationError('evidence_malformed', `TCB_VERSION must be 8 bytes, got ${raw.byteLength}`);
  }
  const rawHex = Buffer.from(raw).reverse().toString('hex');
  if (product === 'Turin') {
    return { raw: rawHex, fmc: raw[0]!, bootloader: raw[1]!, tee: raw[2]!, snp: raw[3]!, microcode: raw[7]! };
  }
  return { raw: rawHex, bootloader: raw[0]!, tee: raw[1]!, snp: raw[6]!, microcode: raw[7]! };
}

/**
 * Product from the report's CPUID fields (v3+): family 0x19 model 0x0X = Milan,
 * 0x1X = Genoa (0xAX, Siena, uses the Genoa keys); family 0x1A = Turin.
 */
export function productFromCpuid(cpuid: SnpCpuid): SnpProduct {
  const modelHigh = cpuid.model >> 4;
  if (cpuid.family === 0x19 && modelHigh === 0x0) return 'Milan';
  if (cpuid.family === 0x19 && (modelHigh === 0x1 || modelHigh === 0xa)) return 'Genoa';
  if (cpuid.family === 0x1a) return 'Turin';
  throw new AttestationError(
    'evidence_unsupported',
    `SEV-SNP report CPUID family 0x${cpuid.family.toString(16)} model 0x${cpuid.model.toString(16)} is not a supported product`,
  );
}

/**
 * Product from a VCEK/VLEK productName extension ("Milan-B0", "Genoa", "Turin", ...: the part
 * before the stepping suffix) or from an AMD CA common name suffix.
 */
export function productFromName(name: string): SnpProduct {
  const base = name.split('-')[0]!;
  if (base === 'Siena') return 'Genoa';
  const found = SNP_PRODUCTS.find((p) => p === base);
  if (!found) {
    throw new AttestationError('evidence_unsupported', `unsupported SEV-SNP product name "${name}"`);
  }
  return found;
}

/**
 * Combines the product sources that are present; they must all agree. At least one source
 * is required.
 */
export function resolveProduct(sources: {
  configured?: SnpProduct | undefined;
  report?: SnpProduct | undefined;
  certificate?: SnpProduct | undefined;
}): SnpProduct {
  const named = Object.entries(sources).filter((e): e is [string, SnpProduct] => e[1] !== undefined);
  if (named.length === 0) {
    throw new AttestationError('collateral_missing', 'cannot tell the SEV-SNP product (no CPUID, certificate or configuration)');
  }
  const first = named[0]!;
  const other = named.find(([, p]) => p !== first[1]);
  if (other) {
    throw new AttestationError(
      'tcb_mismatch',
      `product mismatch: ${first[0]} says ${first[1]} but ${other[0]} says ${other[1]}`,
    );
  }
  return first[1];
}

/** Platform TCB components of a TCB_VERSION, for appraisal's minimum_tcb. */
export function tcbClaims(t: SnpTcb): Record<string, number> {
  return { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode, ...(t.fmc !== undefined ? { fmc: t.fmc } : {}) };
}
