/** inspect-evidence / verify-evidence on the real SEV-SNP samples, as an operator runs them. */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { binPath, conformance, repoRoot } from '../helpers/paths.js';

const found = conformance('sev-snp');
if ('skip' in found) {
  t.skip(found.skip, async () => {});
} else {
  const S = found.dir;
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [binPath, ...args], { encoding: 'utf8' });
    return { code: r.status, json: r.stdout ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };

  t.test('inspect-evidence decodes a hex report without verifying it', async (t) => {
    const r = run('inspect-evidence', path.join(S, 'virtee-sev/report_milan.hex'));
    t.equal(r.code, 0, r.stderr);
    t.equal(r.json.verified, false);
    t.equal(r.json.measurement, '7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f');
    t.equal(r.json.policy.debug, false);
  });

  t.test('verify-evidence: verified with the right VCEK and anchors (binary and hex)', async (t) => {
    const ok = run('verify-evidence', path.join(S, 'virtee-sev/report_milan.hex'), '--type', 'sev-snp', '--cert', path.join(S, 'virtee-sev/vcek_milan.der'), '--anchors', path.join(S, 'amd-roots/virtee-sev'));
    t.equal(ok.code, 0);
    t.same([ok.json.verified, ok.json.reason, ok.json.claims.product], [true, 'ok', 'Milan']);
    const bin = run('verify-evidence', path.join(S, 'go-sev-guest-milan/attestation.bin'), '--cert', path.join(S, 'go-sev-guest-milan/vcek.testcer'), '--anchors', path.join(S, 'amd-roots/go-sev-guest/ask_ark_milan.pem'));
    t.equal(bin.code, 0);
    t.equal(bin.json.claims.policy.debug, true, 'the go-sev-guest report runs with debug enabled');
  });

  t.test('verify-evidence: failures exit 1 with a reason', async (t) => {
    const wrongVcek = run('verify-evidence', path.join(S, 'virtee-sev/report_milan.hex'), '--cert', path.join(S, 'go-sev-guest-milan/vcek.testcer'), '--anchors', path.join(S, 'amd-roots/virtee-sev'));
    t.equal(wrongVcek.code, 1);
    t.match(wrongVcek.json.reason, /^(signature_invalid|tcb_mismatch)/);
    const genoa = run('verify-evidence', path.join(S, 'virtee-sev/report_milan.hex'), '--cert', path.join(S, 'virtee-sev/vcek_milan.der'), '--anchors', path.join(S, 'amd-roots/go-sev-guest/ask_ark_genoa.pem'));
    t.equal(genoa.code, 1);
    t.match(genoa.json.reason, /^(chain_invalid|collateral_missing)/);
    const expiredVlek = run('verify-evidence', path.join(S, 'trustee-milan/test-vlek-report.bin'), '--cert', path.join(S, 'trustee-milan/test-vlek.der'), '--anchors', path.join(S, 'amd-roots/go-sev-guest/ask_ark_milan_vlek.pem'));
    t.equal(expiredVlek.code, 1);
    t.match(expiredVlek.json.reason, /^collateral_expired/);
    const thenVlek = run('verify-evidence', path.join(S, 'trustee-milan/test-vlek-report.bin'), '--cert', path.join(S, 'trustee-milan/test-vlek.der'), '--anchors', path.join(S, 'amd-roots/go-sev-guest/ask_ark_milan_vlek.pem'), '--at', '2025-06-01T00:00:00Z');
    t.equal(thenVlek.code, 0, 'valid at a time inside the VLEK validity');
  });

  t.test('verify-evidence --policy appraises the claims (debug refused)', async (t) => {
    const policy = path.join(repoRoot, 'fixtures/policies/debug-disabled.yaml');
    const r = run('verify-evidence', path.join(S, 'go-sev-guest-milan/attestation.bin'), '--cert', path.join(S, 'go-sev-guest-milan/vcek.testcer'), '--anchors', path.join(S, 'amd-roots/go-sev-guest/ask_ark_milan.pem'), '--policy', policy, '--agent', 'snp-agent');
    t.equal(r.code, 1);
    t.match(r.json.reason, /^debug_enabled/);
  });
}

const tpmFound = conformance('tpm');
if ('skip' in tpmFound) {
  t.skip(tpmFound.skip, async () => {});
} else {
  const G = path.join(tpmFound.dir, 'go-attestation-gcp-windows/derived');
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [binPath, ...args], { encoding: 'utf8' });
    return { code: r.status, json: r.stdout ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };
  t.test('verify-evidence --type tpm and inspect-evidence on a real TPM quote', async (t) => {
    const args = ['--type', 'tpm', '--signature', path.join(G, 'quote_tpmt_signature.bin'), '--pcrs', path.join(G, 'pcrs_sha1.json'), '--ak', path.join(G, 'ak_tpmt_public.bin')];
    const ok = run('verify-evidence', path.join(G, 'quote_tpms_attest.bin'), ...args, '--nonce', '');
    t.equal(ok.code, 0, ok.stderr);
    t.equal(ok.json.claims.pcr_bank, 'sha1');
    t.equal(ok.json.claims.pcr_digest, 'a610f27bc687ce906243287d832706036e79f6e1');
    const nonce = run('verify-evidence', path.join(G, 'quote_tpms_attest.bin'), ...args, '--nonce', '00');
    t.equal(nonce.code, 1);
    t.match(nonce.json.reason, /^binding_mismatch/);
    const inspect = run('inspect-evidence', path.join(G, 'quote_tpms_attest.bin'));
    t.equal(inspect.code, 0);
    t.equal(inspect.json.type, '0x8018');
    const hcl = run('inspect-evidence', path.join(tpmFound.dir, 'trustee-azure-snp-vtpm-milan/hcl-report.bin'));
    t.equal(hcl.code, 0);
    t.equal(hcl.json.verified, false);
  });
}
