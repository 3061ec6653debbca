import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { BASE_CONFIG as base, configProblems } from '../helpers/config.js';

const M = 'ab'.repeat(48);



t.test('attester and verifier sections parse with defaults and resolved paths', async (t) => {
  const c = parseConfig(
    base +
      `attestation:
  attester: { type: tpm, address: 127.0.0.1:2321, pcrs: [0, 7] }
  verifier:
    snp_anchors: [amd/]
    tpm_ak_names: ["000b${'AB'.repeat(32)}"]
    kds: { cache_dir: /var/cache/kds, offline: true }
    reference_values: { files: { prod: rv/prod.yaml }, signing_keys: rv/keys.pem }
`,
    '/etc/attest/sidecar.yaml',
    {},
  );
  t.same(c.attestation?.attester, { type: 'tpm', address: { host: '127.0.0.1', port: 2321 }, pcrBank: 'sha256', pcrs: [0, 7], keyAlgorithm: 'ecc-p256' });
  t.same(c.attestation?.verifier?.snpAnchors, ['/etc/attest/amd']);
  t.same(c.attestation?.verifier?.tpmAkNames, [`000b${'ab'.repeat(32)}`], 'TPM Names, lower-cased');
  t.same(c.attestation?.verifier?.kds, { cacheDir: '/var/cache/kds', offline: true });
  t.same(c.attestation?.verifier?.referenceValues, { files: { prod: '/etc/attest/rv/prod.yaml' }, signingKeys: '/etc/attest/rv/keys.pem', requireSignature: true });
  t.equal(c.attestation?.verifier?.cacheSize, 10_000);
  const snp = parseConfig(base + 'attestation: { attester: { type: sev-snp } }\n', '/x/s.yaml', {});
  t.same(snp.attestation?.attester, { type: 'sev-snp', tsmPath: '/sys/kernel/config/tsm/report' });
  const sim = parseConfig(base + `attestation: { attester: { type: sim, measurement: "${M}", key: sim.pem } }\n`, '/x/s.yaml', {});
  t.same(sim.attestation?.attester, { type: 'sim', measurement: M, guestSvn: 1, debug: false, key: '/x/sim.pem' });
});

t.test('mistakes are reported with position and key', async (t) => {
  t.match(configProblems('attestation: { attester: { type: nitro } }\n'), /sidecar\.yaml:4:\d+: attestation\.attester\.type: unknown attester type 'nitro'/);
  t.match(configProblems('attestation: { attester: { type: sim, measurement: "abcd" } }\n'), /attestation\.attester\.measurement: must be 48 bytes/);
  t.match(configProblems('attestation: { attester: { type: sev-snp, pcrs: [1] } }\n'), /attestation\.attester\.pcrs: does not apply to attester type 'sev-snp'/);
  t.match(configProblems('attestation: { attester: { type: tpm, device: /dev/tpm0, address: 127.0.0.1:1 } }\n'), /give either 'device' or 'address'/);
  t.match(configProblems('attestation: { verifier: { snp_anchor: [x] } }\n'), /snp_anchor/);
  t.match(configProblems('attestation: { verifier: { tpm_ak_keys: [ak.pem] } }\n'), /attestation\.verifier\.tpm_ak_keys: is no longer supported: a public-key pin does not authenticate the AK's TPMT_PUBLIC.*tpm_ak_names/);
  t.match(configProblems(`attestation: { verifier: { tpm_ak_names: ["000b${'00'.repeat(31)}"] } }\n`), /tpm_ak_names\[0\]: must be a TPM Name: 0004 \+ 20 bytes/);
  t.match(configProblems(`attestation: { verifier: { tpm_ak_names: ["0010${'00'.repeat(32)}"] } }\n`), /must be a TPM Name/, 'TPM_ALG_NULL is not a nameAlg');
  t.match(configProblems('attestation: { verifier: { tpm_ak_names: [ak.pem] } }\n'), /must be a TPM Name \(hex nameAlg \|\| digest\)/);
  t.match(configProblems('attestation: { verifier: { reference_values: { files: { prod: a.yaml }, require_signature: true } } }\n'), /require_signature needs 'signing_keys'/);
});

t.test('an action mapping names resource and permission together', async (t) => {
  const text = (m: string) => `identity: { source: files, cert: c.pem, key: k.pem, bundle: b.pem }
inbound: { listen: 127.0.0.1:0, actions: [ { method: GET, path: /l, action: ledger.read${m} } ] }
policy: p.yaml
`;
  t.doesNotThrow(() => parseConfig(text(', resource: ledger_db, permission: read'), '/x/s.yaml', {}));
  t.throws(() => parseConfig(text(', resource: ledger_db'), '/x/s.yaml', {}), /'resource' and 'permission' go together/);
  t.throws(() => parseConfig(text(', permission: read'), '/x/s.yaml', {}), /'resource' and 'permission' go together/);
});
