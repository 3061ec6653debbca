// Untrusted input that used to slip past the parsers: an out-of-range sim timestamp, duplicate
// JSON members in evidence, a VCEK with trailing bytes, and user-chosen names that collided
// with Object.prototype ('constructor', '__proto__') in requirement and config lookups.
import t from 'tap';
import { randomBytes, sign } from 'node:crypto';
import { appraise, type NormalizedClaims } from '../../src/attestation/appraise.js';
import { COLLECTION_TYPE, decodeEvidence } from '../../src/attestation/envelope.js';
import { describeSimReport, generateSimKey, signSimReport, verifySimReport } from '../../src/attestation/sim/report.js';
import { parseSnpEndorsementCert } from '../../src/attestation/sev-snp/certs.js';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { verifySnpReport } from '../../src/attestation/sev-snp/verify.js';
import { parseStrictJson, StrictJsonError } from '../../src/lib/strict-json.js';
import { decodePcrs } from '../../src/attestation/tpm/evidence.js';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { reasonOf } from '../helpers/attestation.js';
import { resignEdited } from '../helpers/certs.js';
import { makeEndorsement, makeHierarchy, makeReport } from '../helpers/snp-synthetic.js';

t.test('sim report: an issued_at_ms past the last Date is evidence_malformed, not a RangeError', async (t) => {
  const key = generateSimKey();
  const fields = {
    measurement: Buffer.alloc(48, 1),
    guestSvn: 1,
    debug: false,
    tcb: 1n,
    chipId: Buffer.alloc(64, 2),
    reportData: randomBytes(64),
    issuedAtMs: Date.parse('2026-01-01T00:00:00Z'),
  };
  const withIssuedAt = (ms: bigint) => {
    const r = signSimReport(fields, key.privateKey);
    r.writeBigUInt64BE(ms, 24);
    r.set(sign('sha256', r.subarray(0, 272), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }), 272);
    return r;
  };
  for (const ms of [0xffff_ffff_ffff_ffffn, 8_640_000_000_000_001n]) {
    const r = withIssuedAt(ms);
    t.throws(() => describeSimReport(r), { reason: 'evidence_malformed', message: /issued_at_ms \d+ is not a representable time/ }, `describe ${ms}`);
    t.equal(reasonOf(() => verifySimReport(r, { keys: [key.publicKey] }, new Date())), 'evidence_malformed', `verify ${ms}`);
  }
  t.equal(describeSimReport(withIssuedAt(8_640_000_000_000_000n)).issued_at, '+275760-09-13T00:00:00.000Z', 'the last Date is still a time');
  t.match(
    reasonOf(() => verifySimReport(withIssuedAt(8_640_000_000_000_000n), { keys: [key.publicKey] }, new Date())),
    'evidence_malformed',
    'and is refused as issued in the future',
  );
});

t.test('strict JSON: duplicate member names are refused at any depth, escaped or not', async (t) => {
  const refused: [string, RegExp][] = [
    ['{"a":1,"a":2}', /duplicate member "a"/],
    ['{"a":1,"\\u0061":2}', /duplicate member "a"/],
    ['{"x":{"b":[1,{"c":1,"c":1}]}}', /duplicate member "c"/],
    ['{"__proto__":1,"__proto__":2}', /duplicate member "__proto__"/],
    ['{"a":1', /JSON/],
    ['[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]', /nested deeper than 16/],
  ];
  for (const [text, message] of refused) t.throws(() => parseStrictJson(text), { constructor: StrictJsonError, message }, text);
  const accepted = [
    '{"a":"a","b":"\\"a\\"","c":{"a":1},"d":[{"a":1},{"a":2}]}',
    '{"k\\"":1,"k":2}',
    '[{"a":1},{"a":1}]',
    '"a"',
    '{}',
  ];
  for (const text of accepted) t.same(parseStrictJson(text), JSON.parse(text), text);
});

t.test('the evidence envelope and its JSON parts refuse duplicate members', async (t) => {
  const rec = (media: string, bytes: Buffer) => `["${media}","${bytes.toString('base64url')}"]`;
  const type = (s: string) => rec('text/plain', Buffer.from(s));
  const report = rec('application/vnd.attest-sidecar.sim-report', randomBytes(336));
  const header = (json: string) => Buffer.from(json).toString('base64url');
  const good = `{"__cmwc_t":"${COLLECTION_TYPE}","type":${type('sim')},"report":${report}}`;
  t.equal(decodeEvidence(header(good)).type, 'sim');
  const cases: [string, string][] = [
    ['part twice', `{"__cmwc_t":"${COLLECTION_TYPE}","type":${type('sim')},"report":${report},"report":${report}}`],
    ['type twice (first sim, then tpm)', `{"__cmwc_t":"${COLLECTION_TYPE}","type":${type('sim')},"type":${type('tpm')},"report":${report}}`],
    ['collection type twice', `{"__cmwc_t":"x","__cmwc_t":"${COLLECTION_TYPE}","type":${type('sim')},"report":${report}}`],
  ];
  for (const [what, json] of cases) {
    t.throws(() => decodeEvidence(header(json)), { reason: 'evidence_malformed', message: /evidence header is not strict JSON: duplicate member/ }, what);
  }
  const at = good.indexOf('sim-report') + 3;
  const invalidUtf8 = Buffer.concat([Buffer.from(good.slice(0, at)), Buffer.from([0xff]), Buffer.from(good.slice(at))]).toString('base64url');
  t.throws(() => decodeEvidence(invalidUtf8), { reason: 'evidence_malformed', message: /not strict JSON/ }, 'invalid UTF-8');

  const pcr = (v: string) => v.repeat(32);
  t.throws(() => decodePcrs(Buffer.from(`{"alg":"sha256","values":{"0":"${pcr('aa')}","0":"${pcr('bb')}"}}`)), {
    reason: 'evidence_malformed',
    message: /pcrs part is not strict JSON: duplicate member "0"/,
  });
  t.throws(() => decodePcrs(Buffer.from(`{"alg":"sha1","alg":"sha256","values":{}}`)), { reason: 'evidence_malformed', message: /duplicate member "alg"/ });
  t.same(decodePcrs(Buffer.from(`{"alg":"sha256","values":{"0":"${pcr('aa')}"}}`)).values[0], pcr('aa'));
});

t.test('a VCEK with trailing bytes is malformed', async (t) => {
  const milan = await makeHierarchy('Milan');
  const chip = Buffer.alloc(64, 5);
  const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
  const vcek = await makeEndorsement(milan, { tcb, hwId: chip });
  const anchors = loadSnpAnchors([milan.ask.pem + milan.ark.pem]);
  const report = makeReport({ product: 'Milan', tcb, chipId: chip }, vcek.privateKey);
  t.equal(reasonOf(() => verifySnpReport(report, { anchors, vcek: vcek.der }, new Date())), 'ok', 'the VCEK as issued');
  for (const trailing of [Buffer.from([0]), Buffer.from('junk'), vcek.der]) {
    const der = Buffer.concat([vcek.der, trailing]);
    t.throws(() => parseSnpEndorsementCert(der), { reason: 'evidence_malformed', message: /certificate: trailing data/ }, `${trailing.length} trailing bytes`);
    t.equal(reasonOf(() => verifySnpReport(report, { anchors, vcek: der }, new Date())), 'evidence_malformed');
  }
  // A validity time out of range, correctly signed by the ASK: node reads it as "Bad time value",
  // an Invalid Date no comparison refuses; it is malformed.
  const month13 = resignEdited(vcek, milan.ask, (tbs) => {
    const at = tbs.indexOf(Buffer.from('200101000000Z'));
    return Buffer.concat([tbs.subarray(0, at), Buffer.from('201301000000Z'), tbs.subarray(at + 13)]);
  }, 'sha384');
  t.equal(month13.validFrom, 'Bad time value', "node's reading of it");
  t.throws(() => parseSnpEndorsementCert(month13.raw), { reason: 'evidence_malformed', message: /notBefore: "201301000000Z" has a field out of range/ });
  t.equal(reasonOf(() => verifySnpReport(report, { anchors, vcek: month13.raw }, new Date())), 'evidence_malformed');
});

t.test("requirement names never reach Object.prototype: minimum_tcb {constructor: 999} is not met by any evidence", async (t) => {
  const claims: NormalizedClaims = { evidence_type: 'sim', tee_type: 'sim', tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }, pcrs: { '0': 'aa' } };
  const now = new Date();
  for (const component of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    t.throws(() => appraise(claims, { teeType: 'sim', minimumTcb: { [component]: 999 } }, now), { reason: 'tcb_too_low', message: new RegExp(`no TCB component '${component}'`) }, component);
    t.throws(() => appraise(claims, { teeType: 'sim', pcrs: { [component]: 'aa' } }, now), { reason: 'pcr_mismatch', message: /is not in the quote/ }, `PCR ${component}`);
  }
  // The same requirement written in a policy: it compiles, and no evidence meets it.
  const policy = compilePolicy(
    `agents:
  - name: a
    spiffe_id: spiffe://example.org/a
    allowed_actions: [x.read]
    attestation_requirements: { tee_type: sim, minimum_tcb: { constructor: 999 } }
`,
    'p.yaml',
  );
  const req = policy.agents[0]!.attestation!;
  t.equal(Object.getPrototypeOf(req.minimumTcb), null, 'read into a null-prototype record');
  t.equal(req.minimumTcb!['constructor'], 999);
  t.throws(() => appraise(claims, req, now), { reason: 'tcb_too_low', message: /no TCB component 'constructor'/ });
});

t.test("config: trust domains and environment names 'constructor' and '__proto__'", async (t) => {
  const base = 'inbound: { listen: 127.0.0.1:0, actions: [] }\npolicy: p.yaml\n';
  const files = (federated: string) => `identity: { source: files, cert: c.pem, key: k.pem, bundle: b.pem, federated: ${federated} }\n${base}`;
  const c = parseConfig(files('{ constructor: c-bundle.pem, "__proto__": p-bundle.pem }'), '/etc/s.yaml', {});
  const federated = c.identity.source === 'files' ? c.identity.federated : undefined;
  t.same(Object.entries(federated ?? {}), [['constructor', '/etc/c-bundle.pem'], ['__proto__', '/etc/p-bundle.pem']]);
  t.ok(federated && Object.hasOwn(federated, 'constructor') && Object.hasOwn(federated, '__proto__'), 'both are federated trust domains');
  const twice = (() => {
    try {
      parseConfig(files('{ constructor: a.pem, "spiffe://constructor": b.pem }'), '/etc/s.yaml', {});
      return 'ok';
    } catch (err) {
      return (err as ConfigError).message;
    }
  })();
  t.match(twice, /trust domain 'constructor' is listed twice/, 'a real duplicate is still one');

  const dev = 'identity: { source: dev, spiffe_id: spiffe://example.org/a }\n';
  const rv = (names: string) => `${dev}attestation: { verifier: { reference_values: { files: { ${names} } } } }\n`;
  const withConstructor = parseConfig(rv('constructor: c.yaml, prod: p.yaml'), '/etc/s.yaml', {});
  t.same(Object.entries(withConstructor.attestation?.verifier?.referenceValues?.files ?? {}), [['constructor', '/etc/c.yaml'], ['prod', '/etc/p.yaml']]);
  t.throws(() => parseConfig(rv('"__proto__": x.yaml, prod: p.yaml'), '/etc/s.yaml', {}), {
    reason: 'config_invalid',
    message: /reference_values\.files\.__proto__: '__proto__' is not an environment name/,
  }, 'refused by name, not silently dropped');
});
