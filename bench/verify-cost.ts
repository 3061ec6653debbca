/**
 * Verification cost per evidence type, measured in this process side by side with a bare
 * node:crypto ECDSA P-384 verify (what an SEV-SNP report signature check costs at minimum).
 * Medians over many iterations; the SNP chain is cached after the first call, as in the sidecar.
 */
import 'reflect-metadata';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { bindingUserData } from '../src/attestation/binding.js';
import { loadSnpAnchors, verifySnpReport } from '../src/attestation/sev-snp/index.js';
import { generateSimKey, signSimReport, verifySimReport } from '../src/attestation/sim/report.js';
import { verifyTpmQuote } from '../src/attestation/tpm/verify.js';
import { makeEndorsement, makeHierarchy, makeReport } from '../test/helpers/snp-synthetic.js';
import { median, repoRoot } from './lib.js';

export interface VerifyCost {
  type: string;
  source: string;
  medianUs: number;
  /** medianUs / the bare P-384 verify's median. */
  ratioToBareP384: number;
}

function timeUs(fn: () => unknown, iterations: number): number {
  for (let i = 0; i < Math.min(50, iterations); i++) fn(); // warm up (JIT, caches)
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return median(samples);
}

export async function measureVerifyCost(iterations: number): Promise<VerifyCost[]> {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const msg = Buffer.alloc(0x2a0, 7);
  const sig = sign('sha384', msg, { key: p384.privateKey, dsaEncoding: 'ieee-p1363' });
  const bare = timeUs(() => verify('sha384', msg, { key: p384.publicKey, dsaEncoding: 'ieee-p1363' }, sig), iterations);
  const out: VerifyCost[] = [{ type: 'bare ECDSA P-384 verify', source: 'node:crypto', medianUs: bare, ratioToBareP384: 1 }];

  // SEV-SNP: a real report when the team's conformance data is beside the repo, else synthetic.
  const shared = path.resolve(repoRoot(), '../shared/conformance/sev-snp');
  let snp: { run: () => unknown; source: string };
  if (existsSync(shared)) {
    const report = Buffer.from(readFileSync(path.join(shared, 'virtee-sev/report_milan.hex'), 'latin1').trim(), 'hex');
    const vcek = readFileSync(path.join(shared, 'virtee-sev/vcek_milan.der'));
    const anchors = loadSnpAnchors([readFileSync(path.join(shared, 'amd-roots/go-sev-guest/ask_ark_milan.pem'), 'utf8')]);
    const now = new Date('2026-11-22T00:00:00Z');
    snp = { run: () => verifySnpReport(report, { anchors, vcek }, now), source: 'virtee report_milan (real)' };
  } else {
    const h = await makeHierarchy('Milan');
    const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
    const chipId = Buffer.alloc(64, 1);
    const vcek = await makeEndorsement(h, { tcb, hwId: chipId });
    const report = makeReport({ product: 'Milan', tcb, chipId }, vcek.privateKey);
    const anchors = loadSnpAnchors([h.ark.pem, h.ask.pem]);
    snp = { run: () => verifySnpReport(report, { anchors, vcek: vcek.der }, new Date()), source: 'synthetic Milan hierarchy' };
  }
  const snpUs = timeUs(snp.run, iterations);
  out.push({ type: 'sev-snp (chain cached)', source: snp.source, medianUs: snpUs, ratioToBareP384: snpUs / bare });

  const simKey = generateSimKey();
  const simReport = signSimReport(
    { measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 0n, chipId: Buffer.alloc(64), reportData: bindingUserData(Buffer.alloc(91)), issuedAtMs: Date.now() },
    simKey.privateKey,
  );
  const simUs = timeUs(() => verifySimReport(simReport, { keys: [simKey.publicKey] }, new Date()), iterations);
  out.push({ type: 'sim', source: 'generated', medianUs: simUs, ratioToBareP384: simUs / bare });

  const gcp = path.resolve(repoRoot(), '../shared/conformance/tpm/go-attestation-gcp-windows/derived');
  if (existsSync(gcp)) {
    const pcrs = JSON.parse(readFileSync(path.join(gcp, 'pcrs_sha1.json'), 'utf8')) as Record<string, string>;
    const input = {
      attest: readFileSync(path.join(gcp, 'quote_tpms_attest.bin')),
      signature: readFileSync(path.join(gcp, 'quote_tpmt_signature.bin')),
      pcrs: { alg: 'sha1' as const, values: Object.fromEntries(Object.entries(pcrs).map(([k, v]) => [Number(k), v])) },
      ak: readFileSync(path.join(gcp, 'ak_tpmt_public.bin')),
    };
    const akKey = (await import('../src/attestation/tpm/ak.js')).resolveAk(input.ak).key;
    const tpmUs = timeUs(() => verifyTpmQuote(input, { expectedExtraData: new Uint8Array(0), akTrust: { keys: [akKey] } }, new Date()), iterations);
    out.push({ type: 'tpm (RSA-2048 AK, 24 PCRs)', source: 'go-attestation GCP quote (real)', medianUs: tpmUs, ratioToBareP384: tpmUs / bare });
  }
  return out;
}
