// URI name constraints (X509-SVID 4.2 / RFC 5280 4.2.1.10) in verifyX509Svid: permitted and
// excluded URI subtrees on intermediates and bundle roots, the leading-period form, fail-closed
// handling of other name types, and a cross-check of every accept/reject case against the
// real `openssl verify` (which enforces URI name constraints too).
import 'reflect-metadata';
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import { customExtension, KU, makeCa, makeIntermediate, makeLeaf, TestCert } from '../helpers/certs.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { X509Bundle, X509BundleSource } from '../../src/spiffe/bundle/x509-bundle.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { SvidVerificationReason, verifyX509Svid } from '../../src/spiffe/verify.js';
import { certificateFacts } from '../../src/spiffe/x509.js';
import { uriHostMatches } from '../../src/spiffe/name-constraints.js';

const NAME_CONSTRAINTS_OID = '2.5.29.30';
const now = new Date();

const uri = (v: string) => new GeneralName({ uniformResourceIdentifier: v });
const dns = (v: string) => new GeneralName({ dNSName: v });
const ip = (v: string) => new GeneralName({ iPAddress: v });

interface NcSpec {
  permit?: GeneralName[];
  exclude?: GeneralName[];
  critical?: boolean;
  /** Set on every subtree (RFC 5280 says minimum MUST be 0, maximum absent). */
  minimum?: number;
}

function nameConstraints(spec: NcSpec) {
  const subtrees = (names: GeneralName[] | undefined) =>
    names ? new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base, minimum: spec.minimum ?? 0 }))) : undefined;
  const der = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: subtrees(spec.permit), excludedSubtrees: subtrees(spec.exclude) }));
  return customExtension(NAME_CONSTRAINTS_OID, spec.critical ?? true, new Uint8Array(der));
}

// One root trusted by every trust domain used here, so that a rejection can only come from
// the name constraints (the leaf is otherwise trusted: the root is in its domain's bundle).
const DOMAINS = [
  'agent-mesh.local',
  'other.local',
  'example.org',
  'a.example.org',
  'b.a.example.org',
  'badexample.org',
  'good.example.org',
  'bad.example.org',
  'x.bad.example.org',
  'blocked.test',
  'other.test',
];

interface Fixture {
  root: TestCert;
  bundles: BundleSet;
}

async function fixture(rootOpts: { extensions?: ReturnType<typeof nameConstraints>[] } = {}): Promise<Fixture> {
  const root = await makeCa({ td: 'agent-mesh.local', name: 'NC Root', ...rootOpts });
  return { root, bundles: new BundleSet(DOMAINS.map((d) => new X509Bundle(parseTrustDomain(d), [root.cert]))) };
}

function accepts(t: Test, chain: readonly X509Certificate[], bundles: X509BundleSource, id: string): void {
  t.equal(verifyX509Svid(chain, bundles, now).id.toString(), id, `accepts ${id}`);
}

function rejects(t: Test, chain: readonly X509Certificate[], bundles: X509BundleSource, reason: SvidVerificationReason, message: RegExp | string): void {
  t.throws(() => verifyX509Svid(chain, bundles, now), { name: 'SvidVerificationError', reason, message }, `${reason}: ${message}`);
}

const leafFor = (issuer: TestCert, id: string) => makeLeaf(issuer, { uris: [id] });

t.test('uriHostMatches: exact host vs leading-period domain form', async (t) => {
  t.ok(uriHostMatches('agent-mesh.local', 'agent-mesh.local'));
  t.notOk(uriHostMatches('x.agent-mesh.local', 'agent-mesh.local'), 'an exact host does not cover subdomains');
  t.ok(uriHostMatches('a.example.org', '.example.org'));
  t.ok(uriHostMatches('b.a.example.org', '.example.org'));
  t.notOk(uriHostMatches('example.org', '.example.org'), 'the bare host is not under the leading-period form');
  t.notOk(uriHostMatches('badexample.org', '.example.org'), 'label boundary respected');
  t.ok(uriHostMatches('AGENT-mesh.local', 'agent-mesh.local'), 'ASCII case-insensitive');
  t.notOk(uriHostMatches('\u212aa.test', 'ka.test'), 'no Unicode case folding (Kelvin sign)');
  t.notOk(uriHostMatches('a.test', ''), 'an empty base matches nothing');
});

t.test('permitted URI subtree on an intermediate', async (t) => {
  const { root, bundles } = await fixture();
  const mid = await makeIntermediate(root, { name: 'Mesh Mid', extensions: [nameConstraints({ permit: [uri('agent-mesh.local')] })] });
  t.same(certificateFacts(mid.cert).uriNameConstraints, { permitted: ['agent-mesh.local'], excluded: [] }, 'recorded in the facts');
  t.same(certificateFacts(mid.cert).unhandledCriticalExtensions, [], 'a critical URI-only nameConstraints is handled');

  const inside = await leafFor(mid, 'spiffe://agent-mesh.local/x');
  accepts(t, inside.chain, bundles, 'spiffe://agent-mesh.local/x');
  const outside = await leafFor(mid, 'spiffe://other.local/x');
  rejects(t, outside.chain, bundles, 'svid_name_constraints', /^spiffe:\/\/other\.local\/x is outside the name constraints of "CN=Mesh Mid, O=attest-sidecar tests": trust domain "other\.local" matches no permitted URI subtree \("agent-mesh\.local"\)$/);
  // control: other.local is otherwise trusted (same root, no constrained intermediate)
  accepts(t, (await leafFor(root, 'spiffe://other.local/x')).chain, bundles, 'spiffe://other.local/x');
  // an exact host does not permit its subdomains
  const sub = await leafFor(mid, 'spiffe://a.example.org/x');
  rejects(t, sub.chain, bundles, 'svid_name_constraints', /matches no permitted URI subtree/);
  // case-insensitive comparison (RFC 5280): an upper-case constraint still matches
  const upper = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('Agent-Mesh.LOCAL')] })] });
  accepts(t, (await leafFor(upper, 'spiffe://agent-mesh.local/y')).chain, bundles, 'spiffe://agent-mesh.local/y');
});

t.test('leading-period form: one or more labels prepended, not the bare host', async (t) => {
  const { root, bundles } = await fixture();
  const mid = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('.example.org')] })] });
  for (const id of ['spiffe://a.example.org/w', 'spiffe://b.a.example.org/w']) accepts(t, (await leafFor(mid, id)).chain, bundles, id);
  for (const id of ['spiffe://example.org/w', 'spiffe://badexample.org/w', 'spiffe://other.local/w']) {
    rejects(t, (await leafFor(mid, id)).chain, bundles, 'svid_name_constraints', /matches no permitted URI subtree \("\.example\.org"\)/);
  }
  // several permitted subtrees: matching any one is enough
  const multi = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('.example.org'), uri('agent-mesh.local')] })] });
  accepts(t, (await leafFor(multi, 'spiffe://agent-mesh.local/w')).chain, bundles, 'spiffe://agent-mesh.local/w');
  accepts(t, (await leafFor(multi, 'spiffe://a.example.org/w')).chain, bundles, 'spiffe://a.example.org/w');
});

t.test('excluded URI subtrees, alone and with permitted ones', async (t) => {
  const { root, bundles } = await fixture();
  const mid = await makeIntermediate(root, { name: 'Excl Mid', extensions: [nameConstraints({ exclude: [uri('.example.org'), uri('blocked.test')] })] });
  rejects(t, (await leafFor(mid, 'spiffe://a.example.org/w')).chain, bundles, 'svid_name_constraints', /outside the name constraints of "CN=Excl Mid, O=attest-sidecar tests": trust domain "a\.example\.org" matches excluded URI subtree "\.example\.org"/);
  rejects(t, (await leafFor(mid, 'spiffe://blocked.test/w')).chain, bundles, 'svid_name_constraints', /matches excluded URI subtree "blocked\.test"/);
  accepts(t, (await leafFor(mid, 'spiffe://example.org/w')).chain, bundles, 'spiffe://example.org/w'); // bare host not excluded by '.example.org'
  accepts(t, (await leafFor(mid, 'spiffe://other.test/w')).chain, bundles, 'spiffe://other.test/w');

  const both = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('.example.org')], exclude: [uri('bad.example.org')] })] });
  accepts(t, (await leafFor(both, 'spiffe://good.example.org/w')).chain, bundles, 'spiffe://good.example.org/w');
  rejects(t, (await leafFor(both, 'spiffe://bad.example.org/w')).chain, bundles, 'svid_name_constraints', /matches excluded URI subtree "bad\.example\.org"/);
  accepts(t, (await leafFor(both, 'spiffe://x.bad.example.org/w')).chain, bundles, 'spiffe://x.bad.example.org/w'); // exact-host exclusion only
});

t.test('constraints of the bundle root and of every CA along the path apply', async (t) => {
  const { root, bundles } = await fixture({ extensions: [nameConstraints({ permit: [uri('agent-mesh.local'), uri('.example.org')] })] });
  accepts(t, (await leafFor(root, 'spiffe://agent-mesh.local/x')).chain, bundles, 'spiffe://agent-mesh.local/x');
  rejects(t, (await leafFor(root, 'spiffe://other.local/x')).chain, bundles, 'svid_name_constraints', /of "CN=NC Root, O=attest-sidecar tests"/);
  // root permits '.example.org', the intermediate narrows to a.example.org: both must hold
  const mid = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('a.example.org'), uri('other.local')] })] });
  accepts(t, (await leafFor(mid, 'spiffe://a.example.org/x')).chain, bundles, 'spiffe://a.example.org/x');
  rejects(t, (await leafFor(mid, 'spiffe://good.example.org/x')).chain, bundles, 'svid_name_constraints', /matches no permitted URI subtree \("a\.example\.org", "other\.local"\)/);
  rejects(t, (await leafFor(mid, 'spiffe://other.local/x')).chain, bundles, 'svid_name_constraints', /of "CN=NC Root/); // the intermediate allows it, the root does not
  // a constrained CA higher up a longer path
  const upper = await makeIntermediate(root, { name: 'Upper', extensions: [nameConstraints({ exclude: [uri('b.a.example.org')] })] });
  const lower = await makeIntermediate(upper, { name: 'Lower' });
  rejects(t, (await leafFor(lower, 'spiffe://b.a.example.org/x')).chain, bundles, 'svid_name_constraints', /of "CN=Upper, O=attest-sidecar tests"/);
  accepts(t, (await leafFor(lower, 'spiffe://a.example.org/z')).chain, bundles, 'spiffe://a.example.org/z');
});

t.test('other name types: critical refused (fail closed), non-critical ignored', async (t) => {
  const { root, bundles } = await fixture();
  const id = 'spiffe://agent-mesh.local/x';

  const dnsCrit = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [dns('agent-mesh.local')] })] });
  t.same(certificateFacts(dnsCrit.cert).unhandledCriticalExtensions, [NAME_CONSTRAINTS_OID]);
  t.equal(certificateFacts(dnsCrit.cert).uriNameConstraints, undefined);
  rejects(t, (await leafFor(dnsCrit, id)).chain, bundles, 'svid_untrusted', /unhandled critical extension\(s\) 2\.5\.29\.30 \(nameConstraints: name type\(s\) dNSName not supported \(only uniformResourceIdentifier\)\)/);

  // mixed URI + other types, critical: still refused, even though the URI part would pass
  const mixed = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('agent-mesh.local'), ip('10.0.0.0/8')], exclude: [dns('evil.test')] })] });
  t.same(certificateFacts(mixed.cert).uriNameConstraints, { permitted: ['agent-mesh.local'], excluded: [] });
  rejects(t, (await leafFor(mixed, id)).chain, bundles, 'svid_untrusted', /name type\(s\) iPAddress, dNSName not supported/);

  // URI subtree with a minimum (RFC 5280: MUST be 0), critical: refused
  const minimum = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [uri('agent-mesh.local')], minimum: 1 })] });
  rejects(t, (await leafFor(minimum, id)).chain, bundles, 'svid_untrusted', /with a minimum or maximum are not supported/);

  // empty nameConstraints (no subtrees), critical: refused
  const empty = await makeIntermediate(root, { extensions: [nameConstraints({})] });
  rejects(t, (await leafFor(empty, id)).chain, bundles, 'svid_untrusted', /nameConstraints: no subtrees/);

  // the same on a leaf: svid_malformed with the reason
  const leafCrit = await makeLeaf(root, { uris: [id], extensions: [nameConstraints({ permit: [dns('a.test')] })] });
  rejects(t, [leafCrit.cert], bundles, 'svid_malformed', /leaf certificate .* unhandled critical extension\(s\) 2\.5\.29\.30 \(nameConstraints: name type\(s\) dNSName/);

  // non-critical: the dNSName / iPAddress subtrees are ignored, the URI ones still enforced
  const lax = await makeIntermediate(root, {
    extensions: [nameConstraints({ critical: false, permit: [dns('nothing.test'), uri('agent-mesh.local')], exclude: [ip('10.0.0.0/8')] })],
  });
  t.same(certificateFacts(lax.cert).unhandledCriticalExtensions, []);
  accepts(t, (await leafFor(lax, id)).chain, bundles, id);
  rejects(t, (await leafFor(lax, 'spiffe://other.local/x')).chain, bundles, 'svid_name_constraints', /matches no permitted URI subtree/);
  const laxDnsOnly = await makeIntermediate(root, { extensions: [nameConstraints({ critical: false, permit: [dns('nothing.test')] })] });
  accepts(t, (await leafFor(laxDnsOnly, id)).chain, bundles, id);
});

t.test('a path broken by name constraints is skipped when another valid path exists', async (t) => {
  // Two bundle roots with the same subject and key: one constrained to agent-mesh.local, one not.
  const constrained = await makeCa({ td: 'other.local', name: 'Twin', extensions: [nameConstraints({ permit: [uri('agent-mesh.local')] })] });
  const generated = await x509.X509CertificateGenerator.createSelfSigned({
    name: constrained.subject,
    keys: constrained.keys as never,
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + 3600_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(KU.keyCertSign | KU.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(constrained.keys.publicKey as never),
    ],
  });
  const twin = new X509Certificate(Buffer.from(generated.rawData));
  const leaf = await leafFor(constrained, 'spiffe://other.local/x');
  t.ok(leaf.cert.checkIssued(twin) && leaf.cert.verify(twin.publicKey), 'the twin root also issued the leaf');
  const td = parseTrustDomain('other.local');
  rejects(t, leaf.chain, new X509Bundle(td, [constrained.cert]), 'svid_name_constraints', /of "CN=Twin, O=attest-sidecar tests"/);
  const v = verifyX509Svid(leaf.chain, new X509Bundle(td, [constrained.cert, twin]), now);
  t.equal(v.chain[1]!.fingerprint256, twin.fingerprint256, 'verified through the unconstrained twin');
});

t.test('cross-check with the openssl CLI', async (t) => {
  const { root, bundles } = await fixture();
  const dir = mkdtempSync(join(tmpdir(), 'nc-openssl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'root.pem'), root.pem);
  let n = 0;
  const opensslVerify = (mid: TestCert, leaf: TestCert) => {
    const i = ++n;
    writeFileSync(join(dir, `mid${i}.pem`), mid.pem);
    writeFileSync(join(dir, `leaf${i}.pem`), leaf.pem);
    return spawnSync('openssl', ['verify', '-CAfile', 'root.pem', '-untrusted', `mid${i}.pem`, `leaf${i}.pem`], { cwd: dir, encoding: 'utf8' });
  };
  const ours = (leaf: TestCert): boolean => {
    try {
      verifyX509Svid(leaf.chain, bundles, now);
      return true;
    } catch {
      return false;
    }
  };

  const cases: { nc: NcSpec; id: string; ok: boolean }[] = [
    { nc: { permit: [uri('agent-mesh.local')] }, id: 'spiffe://agent-mesh.local/x', ok: true },
    { nc: { permit: [uri('agent-mesh.local')] }, id: 'spiffe://other.local/x', ok: false },
    { nc: { permit: [uri('.example.org')] }, id: 'spiffe://a.example.org/x', ok: true },
    { nc: { permit: [uri('.example.org')] }, id: 'spiffe://example.org/x', ok: false },
    { nc: { exclude: [uri('.example.org')] }, id: 'spiffe://b.a.example.org/x', ok: false },
    { nc: { exclude: [uri('.example.org')] }, id: 'spiffe://example.org/x', ok: true },
  ];
  for (const c of cases) {
    const mid = await makeIntermediate(root, { extensions: [nameConstraints(c.nc)] });
    const leaf = await leafFor(mid, c.id);
    const run = opensslVerify(mid, leaf);
    const what = `${c.id} under ${JSON.stringify(certificateFacts(mid.cert).uriNameConstraints)}`;
    t.equal(run.status === 0, c.ok, `openssl ${c.ok ? 'accepts' : 'rejects'} ${what}: ${run.stdout}${run.stderr}`);
    if (!c.ok) t.match(run.stdout + run.stderr, /(permitted|excluded) subtree violation/, 'openssl names the name-constraint violation');
    t.equal(ours(leaf), c.ok, `we ${c.ok ? 'accept' : 'reject'} ${what}`);
  }

  // Deliberate difference: OpenSSL enforces dNSName constraints (a leaf without DNS names
  // passes them), so it accepts a chain whose CRITICAL nameConstraints holds a dNSName
  // subtree; we do not implement that name type and refuse the extension (fail closed).
  const dnsMid = await makeIntermediate(root, { extensions: [nameConstraints({ permit: [dns('nothing.test')] })] });
  const dnsLeaf = await leafFor(dnsMid, 'spiffe://agent-mesh.local/x');
  const dnsRun = opensslVerify(dnsMid, dnsLeaf);
  t.equal(dnsRun.status, 0, `openssl accepts the dNSName-constrained chain: ${dnsRun.stdout}${dnsRun.stderr}`);
  t.equal(ours(dnsLeaf), false, 'we refuse it');
});
