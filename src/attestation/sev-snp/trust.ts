/**
 * SEV-SNP trust configuration (`snp_anchors`, `kds` under attestation.verifier): the AMD
 * ARK/ASK/ASVK anchors and the VCEK collateral cache. Shared by the kinds whose evidence is an
 * SNP report (sev-snp, az-snp-vtpm).
 */
import { readPath } from '../../lib/fields.js';
import { pathList } from '../config-read.js';
import type { TrustSection } from '../kind.js';
import { loadSnpAnchors, type SnpTrustAnchors } from './anchors.js';
import { KdsCollateral } from './kds.js';
import { SNP_PRODUCTS, type SnpProduct } from './tcb.js';

export interface SnpTrustConfig {
  /** AMD ARK/ASK/ASVK PEM files or directories. */
  snpAnchors: string[];
  /** AMD KDS collateral cache (VCEKs for reports that arrive without one). */
  kds?: { cacheDir: string; offline: boolean; baseUrl?: string; product?: SnpProduct };
}

export interface SnpTrust {
  /** AMD ARK/ASK/ASVK per product; absent: SEV-SNP evidence is refused (collateral_missing). */
  snpAnchors: SnpTrustAnchors;
  /** VCEKs for SEV-SNP reports that arrive without one (memory lookups; fetching is in the background). */
  kds: KdsCollateral;
}

export const SNP_TRUST: TrustSection<SnpTrustConfig, Partial<SnpTrust>> = {
  keys: ['snp_anchors', 'kds'],
  defaults: { snpAnchors: [] },
  read(reader, vm, baseDir) {
    const out: SnpTrustConfig = { snpAnchors: pathList(reader, vm, 'snp_anchors', baseDir) };
    const kdsField = vm.get('kds');
    const kdsMap = kdsField && reader.map(kdsField, ['cache_dir', 'offline', 'base_url', 'product']);
    if (kdsMap) {
      const dirField = kdsMap.require('cache_dir');
      const cacheDir = dirField && readPath(reader, dirField, baseDir);
      const offlineField = kdsMap.get('offline');
      const baseField = kdsMap.get('base_url');
      const productField = kdsMap.get('product');
      const product = productField && reader.string(productField);
      if (productField && product !== undefined && !SNP_PRODUCTS.includes(product as SnpProduct)) reader.reportField(productField, 'must be Milan, Genoa or Turin');
      if (cacheDir) {
        out.kds = {
          cacheDir,
          offline: (offlineField && reader.bool(offlineField)) ?? false,
          ...(baseField && reader.string(baseField) ? { baseUrl: reader.string(baseField)! } : {}),
          ...(product ? { product: product as SnpProduct } : {}),
        };
      }
    }
    return out;
  },
  async load(config, ctx) {
    const trust: Partial<SnpTrust> = {};
    if (config.snpAnchors.length > 0) {
      trust.snpAnchors = loadSnpAnchors(config.snpAnchors.flatMap((p) => ctx.pemSources(p, 'attestation.verifier.snp_anchors')));
    }
    if (config.kds) {
      const kds = new KdsCollateral({
        cacheDir: config.kds.cacheDir,
        offline: config.kds.offline,
        ...(config.kds.baseUrl ? { baseUrl: config.kds.baseUrl } : {}),
        ...(config.kds.product ? { product: config.kds.product } : {}),
        ...(trust.snpAnchors ? { anchors: trust.snpAnchors } : {}),
        ...(ctx.logger ? { logger: ctx.logger } : {}),
      });
      await kds.init();
      await kds.load();
      trust.kds = kds;
    }
    return trust;
  },
};
