/**
 * Certificate chains as real SPIRE issues them, through a service+agent sidecar pair:
 *   - by default SPIRE signs X509-SVIDs with its self-signed CA: each sidecar presents its leaf
 *     alone, and the bundle is that CA;
 *   - with UpstreamAuthority "disk" (an upstream intermediate under an offline root) SPIRE's CA
 *     is an intermediate too: each sidecar presents leaf, SPIRE CA and upstream intermediate,
 *     and the bundle is the upstream root only.
 * Both directions are looked at (the service's server chain, and the agent's client chain as a
 * probe upstream receives it), and cross-checked with `openssl s_client -showcerts` and
 * `openssl verify`. A kept-alive client stays served across bundle changes.
 */
import 'reflect-metadata';
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { Client } from 'undici';
import { DevCa } from '../../src/dev/ca.js';
import { ECDSA_SHA256, exportPkcs8, generateKeys, pem, randomSerialHex, webcrypto } from '../../src/dev/ca-keys.js';
import type { SpireDeployment } from '../../src/mesh/spire/deployment.js';
import { svidChainPem, svidKeyPem } from '../../src/spiffe/svid.js';
import { viaProxy } from '../helpers/mesh.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { PAIR_TD, SERVICE_ID, SpirePair } from '../helpers/spire-pair.js';
import { presentedChain, probeServer, rawMtlsGet, tapSelector, tapSource, trustDomains } from '../helpers/spire-peers.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';



const noOpenssl = toolsMissing(['openssl'], 'openssl');

function run(cmd: string, args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

const pemOf = (c: X509Certificate): string => c.toString();
const certCount = (text: string): number => (text.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length;

/** An upstream PKI for UpstreamAuthority "disk": a root, and an intermediate SPIRE signs its CA with. */
async function upstreamPki(): Promise<{ rootPem: string; certPem: string; keyPem: string }> {
  const validity = { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 7 * 24 * 3600 * 1000) };
  const caUsages = new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);
  const rootKeys = await generateKeys('ec-p256');
  const root = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialHex(),
      name: 'O=attest-sidecar tests, CN=upstream root',
      ...validity,
      keys: rootKeys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), caUsages, await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey, false, webcrypto)],
    },
    webcrypto,
  );
  const keys = await generateKeys('ec-p256');
  const intermediate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: 'O=attest-sidecar tests, CN=upstream intermediate',
      issuer: root.subject,
      ...validity,
      publicKey: keys.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        caUsages,
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { rootPem: root.toString('pem'), certPem: intermediate.toString('pem'), keyPem: pem('PRIVATE KEY', await exportPkcs8(keys.privateKey)) };
}

/**
 * A pair on `spire` plus a probe upstream for the agent; checks that SPIRE issues chains of
 * `length` certificates, that both sidecars present those and lead to `rootPem`, the only bundle
 * authority. (OpenSSL completes a chain that has no intermediate with the issuer from the trust
 * store, so with a leaf-only SVID the root may follow the leaf: a bundle certificate is allowed
 * at the end, nothing else.)
 */
async function checkChains(t: Test, spire: SpireDeployment, length: number, rootPem: string): Promise<void> {
  const td = spire.trustDomain;
  const root = new X509Certificate(rootPem);
  const clientId = `spiffe://${td}/client`;
  await spire.createEntry({ spiffeId: clientId, selectors: [tapSelector()], x509SvidTtlSeconds: 60 });
  const client = await tapSource(t, spire);
  const bundle = await spire.bundlePem();
  t.equal(certCount(bundle), 1, 'the bundle holds one authority');
  t.equal(new X509Certificate(bundle).fingerprint256, root.fingerprint256, 'the expected root');
  const mine = client.current()!.svid;
  t.equal(mine.certificates.length, length, `the Workload API hands out ${length} certificate(s) per SVID`);

  const probe = await probeServer(t, client, () => bundle);
  const pair = await SpirePair.start(t, spire, {
    x509SvidTtlSeconds: 60,
    policyAgents: { client: clientId },
    extraRoutes: `    - { name: probe, upstream: "https://127.0.0.1:${probe.port}", server_id: "${clientId}" }`,
  });
  t.equal((await pair.request()).status, 200, 'the pair serves');
  const raw = await rawMtlsGet(pair.inboundPort, svidChainPem(mine), svidKeyPem(mine), bundle);
  t.equal(raw.status, 200, `the inbound sidecar accepts a client presenting ${length} certificate(s): ${raw.refused ?? 'answered'}`);

  const isRoot = (c: X509Certificate) => c.fingerprint256 === root.fingerprint256;
  const serverSent = await presentedChain(pair.inboundPort, mine, bundle);
  t.equal((await viaProxy(`http://127.0.0.1:${pair.outboundPort}`, 'GET', 'http://probe/x')).status, 200, 'the agent sidecar reaches the probe');
  const clientSent = probe.lastClientChain();
  const issued = { service: serverSent.filter((c) => !isRoot(c)), agent: clientSent.filter((c) => !isRoot(c)) };
  t.comment(`certificates sent: service ${serverSent.length}, agent ${clientSent.length} (SPIRE issued ${length})`);
  for (const [who, sent] of [
    ['service', serverSent],
    ['agent', clientSent],
  ] as const) {
    const chain = issued[who];
    t.equal(chain.length, length, `the ${who} sidecar presents the ${length} certificate(s) SPIRE issued`);
    t.same(sent.slice(chain.length).map((c) => c.fingerprint256), sent.length > chain.length ? [root.fingerprint256] : [], `the ${who} sidecar sends nothing else but, at most, the root`);
    t.ok(chain[0]!.ca === false && /URI:spiffe:\/\//.test(chain[0]!.subjectAltName ?? ''), `the ${who}'s first certificate is its SVID`);
    for (let i = 0; i + 1 < chain.length; i++) t.ok(chain[i + 1]!.ca && chain[i]!.checkIssued(chain[i + 1]!) && chain[i]!.verify(chain[i + 1]!.publicKey), `the ${who}'s certificate ${i} is signed by the next one it sends`);
    const top = chain[chain.length - 1]!;
    t.ok(top.checkIssued(root) && top.verify(root.publicKey), `the ${who}'s chain ends at a certificate the root signed`);
  }

  // Bundle changes (a federation added, then removed) re-check open connections: a peer whose
  // chain still leads to a held root keeps its connection, intermediates or not.
  const kept = new Client(`https://127.0.0.1:${pair.inboundPort}`, {
    connect: { cert: svidChainPem(mine), key: svidKeyPem(mine), ca: bundle, checkServerIdentity: () => undefined },
    pipelining: 1,
    keepAliveTimeout: 120_000,
  });
  let connects = 0;
  kept.on('connect', () => connects++);
  t.teardown(() => kept.destroy());
  const keptGet = async () => {
    const r = await kept.request({ path: '/things/1', method: 'GET' });
    await r.body.text();
    return r.statusCode;
  };
  t.equal(await keptGet(), 200, 'a kept-alive client is served');
  const partnerPem = path.join(spire.dir, 'partner.pem');
  writeFileSync(partnerPem, (await DevCa.create({ trustDomain: 'partner.test' })).bundle().toPem());
  await spire.server(['bundle', 'set', '-id', 'spiffe://partner.test', '-path', partnerPem]);
  const serviceSpec = { spiffeId: SERVICE_ID, selectors: [pair.service.proc.selector], x509SvidTtlSeconds: 60 };
  for (const federatesWith of [['partner.test'], []]) {
    await spire.updateEntry(pair.entries.service!, { ...serviceSpec, federatesWith });
    const want = federatesWith.length > 0;
    await until(async () => (trustDomains(await pair.service.status()).includes('partner.test') === want ? true : undefined), 'the service sidecar to see the bundle change', 60_000, () => pair.context());
    t.equal(await keptGet(), 200, `after a bundle change (${want ? 'federation added' : 'federation removed'}) the kept-alive client is still served`);
  }
  t.equal(connects, 1, 'on its one connection');

  t.test('openssl agrees', { skip: skipFor(noOpenssl) }, async (t) => {
    const dir = pair.service.proc.dir;
    const file = (name: string, text: string) => {
      writeFileSync(path.join(dir, name), text, { mode: 0o600 });
      return path.join(dir, name);
    };
    const rootFile = file('root.pem', rootPem);
    const cert = file('client.pem', svidChainPem(mine));
    const key = file('client-key.pem', svidKeyPem(mine));
    const shown = await run('openssl', ['s_client', '-connect', `127.0.0.1:${pair.inboundPort}`, '-showcerts', '-cert', cert, '-cert_chain', cert, '-key', key, '-CAfile', rootFile], 'Q\n');
    t.equal(certCount(shown.stdout), serverSent.length, `openssl s_client -showcerts sees the ${serverSent.length} certificate(s) Node saw`);
    t.match(shown.stdout, /Verify return code: 0 \(ok\)/, 'and openssl verifies them against the bundle');
    for (const [who, chain] of Object.entries(issued)) {
      const leaf = file(`${who}-leaf.pem`, pemOf(chain[0]!));
      const untrusted = chain.length > 1 ? ['-untrusted', file(`${who}-intermediates.pem`, chain.slice(1).map(pemOf).join(''))] : [];
      const verified = await run('openssl', ['verify', '-CAfile', rootFile, ...untrusted, leaf]);
      t.equal(verified.code, 0, `openssl verify: the ${who}'s chain leads to the root: ${verified.stdout}${verified.stderr}`);
      if (untrusted.length > 0) {
        const alone = await run('openssl', ['verify', '-CAfile', rootFile, leaf]);
        t.not(alone.code, 0, `openssl verify: the ${who}'s leaf without its intermediate does not`);
      }
    }
  });
}

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test("SPIRE's default: leaf-only X509-SVIDs under the self-signed server CA", async (t) => {
    const spire = await startSpire(t, { trustDomain: PAIR_TD });
    await checkChains(t, spire, 1, await spire.bundlePem());
  });

  t.test('UpstreamAuthority "disk": leaf, SPIRE CA and upstream intermediate; the bundle is the upstream root', async (t) => {
    const upstream = await upstreamPki();
    const spire = await startSpire(t, { trustDomain: PAIR_TD, upstream: { certPem: upstream.certPem, keyPem: upstream.keyPem, bundlePem: upstream.rootPem } });
    await checkChains(t, spire, 3, upstream.rootPem);
  });
}
