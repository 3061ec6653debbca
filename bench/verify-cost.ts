/**
 * Verification cost per evidence type, measured in this process side by side with a bare
 * node:crypto ECDSA P-384 verify (what an SEV-SNP report signature check costs at minimum).
 * Medians over many iterations; the SNP chain is cached after the first call, as in the sidecar.
 * The verifiers take turns in short blocks, so every ratio compares timings taken side by side:
 * one verifier timed after another would pick up the VM's drift between them.
 */
import 'reflect-metadata';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { bindingUserData } from '../src/attestation/binding.js';
import { loadSnpAnchors } from '../src/attestation/sev-snp/anchors.js';
import { verifySnpReport } from '../src/attestation/sev-snp/verify.js';
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

/** Iterations of one verifier between turns: long enough to stay warm, short against drift. */
const BLOCK = 25;

/** Median microseconds per call of each function, `iterations` calls each, in alternating blocks. */
export function timeInterleavedUs(fns: readonly (() => unknown)[], iterations: number): number[] {
  for (const fn of fns) for (let i = 0; i < Math.min(50, iterations); i++) fn(); // warm up (JIT, caches)
  const samples = fns.map(() => [] as number[]);
  for (let done = 0; done < iterations; done += BLOCK) {
    const n = Math.min(BLOCK, iterations - done);
    fns.forEach((fn, k) => {
      for (let i = 0; i < n; i++) {
        const t = process.hrtime.bigint();
        fn();
        samples[k]!.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    });
  }
  return samples.map((x) => median(x));
}

export async function measureVerifyCost(iterations: number): Promise<VerifyCost[]> {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const msg = Buffer.alloc(0x2a0, 7);
  const sig = sign('sha384', msg, { key: p384.privateKey, dsaEncoding: 'ieee-p1363' });
  const bareRun = () => verify('sha384', msg, { key: p384.publicKey, dsaEncoding: 'ieee-p1363' }, sig);

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

  const simKey = generateSimKey();
  const simReport = signSimReport(
    { measurement: Buffer.alloc(48, 1), guestSvn: 1, debug: false, tcb: 0n, chipId: Buffer.alloc(64), reportData: bindingUserData(Buffer.alloc(91)), issuedAtMs: Date.now() },
    simKey.privateKey,
  );
  const measured: { type: string; source: string; run: () => unknown }[] = [
    { type: 'bare ECDSA P-384 verify', source: 'node:crypto', run: bareRun },
    { type: 'sev-snp (chain cached)', source: snp.source, run: snp.run },
    { type: 'sim', source: 'generated', run: () => verifySimReport(simReport, { keys: [simKey.publicKey] }, new Date()) },
  ];

  const gcp = path.resolve(repoRoot(), '../shared/conformance/tpm/go-attestation-gcp-windows/derived');
  if (existsSync(gcp)) {
    const pcrs = JSON.parse(readFileSync(path.join(gcp, 'pcrs_sha1.json'), 'utf8')) as Record<string, string>;
    const input = {
      attest: readFileSync(path.join(gcp, 'quote_tpms_attest.bin')),
      signature: readFileSync(path.join(gcp, 'quote_tpmt_signature.bin')),
      pcrs: { alg: 'sha1' as const, values: Object.fromEntries(Object.entries(pcrs).map(([k, v]) => [Number(k), v])) },
      ak: readFileSync(path.join(gcp, 'ak_tpmt_public.bin')),
    };
    const akName = (await import('../src/attestation/tpm/ak.js')).resolveAk(input.ak).tpmPublic!.name;
    measured.push({
      type: 'tpm (RSA-2048 AK, 24 PCRs)',
      source: 'go-attestation GCP quote (real)',
      run: () => verifyTpmQuote(input, { expectedExtraData: new Uint8Array(0), akTrust: { names: [akName] } }, new Date()),
    });
  }
  // Each must verify before it is timed: a verifier that fails would time its failure path.
  if (bareRun() !== true) throw new Error('bench: the bare P-384 signature does not verify');
  for (const m of measured) m.run();
  const us = timeInterleavedUs(measured.map((m) => m.run), iterations);
  return measured.map((m, i) => ({ type: m.type, source: m.source, medianUs: us[i]!, ratioToBareP384: us[i]! / us[0]! }));
}
