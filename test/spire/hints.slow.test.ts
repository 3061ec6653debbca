/**
 * Hints against real SPIRE: one sidecar process matched by two registration entries (two SPIFFE
 * IDs, two hints) gets both SVIDs from the agent; `identity.hint` picks one, the other hint the
 * other. Checked in /status and in the certificate a TLS peer is shown.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { svidChainPem, svidKeyPem } from '../../src/spiffe/svid.js';
import { freePort } from '../helpers/ports.js';
import { EchoApp } from '../helpers/mesh.js';
import { tapSelector, tapSource } from '../helpers/spire-peers.js';
import { getStatus, sidecarProcess, spireSkip, startSpire, until } from '../helpers/spire.js';

/** The URI SAN of the certificate the server on `port` presents (the handshake may be refused right after). */
function presentedId(port: number, cert: string, key: string, ca: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, cert, key, ca, checkServerIdentity: () => undefined, rejectUnauthorized: false });
    s.once('secureConnect', () => {
      resolve(/URI:([^,\s]+)/.exec(s.getPeerCertificate().subjectaltname ?? '')?.[1]);
      s.destroy();
    });
    s.once('error', () => resolve(undefined));
  });
}

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('identity.hint picks the SVID of the entry with that hint', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'hints.test' });
    const td = spire.trustDomain;
    const blue = `spiffe://${td}/service/blue`;
    const green = `spiffe://${td}/service/green`;
    const sidecar = sidecarProcess(t, spire, 'hinted');
    // Registered in this order and with IDs in this order: neither "first" is what a hint picks.
    await spire.createEntry({ spiffeId: green, selectors: [sidecar.selector], x509SvidTtlSeconds: 60, hint: 'internal' });
    await spire.createEntry({ spiffeId: blue, selectors: [sidecar.selector], x509SvidTtlSeconds: 60, hint: 'external' });
    await spire.createEntry({ spiffeId: `spiffe://${td}/client`, selectors: [tapSelector()], x509SvidTtlSeconds: 60 });

    const me = (await tapSource(t, spire)).current()!.svid;
    const bundle = await spire.bundlePem();

    const app = new EchoApp();
    t.teardown(() => app.close());
    const appUrl = await app.start();
    const inbound = await freePort();
    const admin = await freePort();
    const config = (hint: string) => `identity: { source: workload-api, socket: "unix://${spire.workloadSocket}", hint: ${hint} }
inbound:
  listen: 127.0.0.1:${inbound}
  app: ${appUrl}
  actions:
    - { method: GET, path: /things/:id, action: things.read }
policy: policy.yaml
admin: { listen: 127.0.0.1:${admin} }
state_dir: state
log: { level: warn, audit: audit.log }
`;
    writeFileSync(join(sidecar.dir, 'policy.yaml'), `agents:\n  - name: client\n    spiffe_id: spiffe://${td}/client\n    allowed_actions: [things.read]\n`);

    for (const [hint, id] of [
      ['external', blue],
      ['internal', green],
    ] as const) {
      sidecar.start(config(hint));
      const status = await until(
        async () => {
          const r = await getStatus(`http://127.0.0.1:${admin}/status`);
          return r?.status === 200 && (JSON.parse(r.body) as { spiffe_id: string | null }).spiffe_id !== null ? (JSON.parse(r.body) as { spiffe_id: string }) : undefined;
        },
        `the sidecar with hint ${hint} to hold an SVID`,
        60_000,
        () => sidecar.exited ?? sidecar.stderr,
      );
      t.equal(status.spiffe_id, id, `hint '${hint}': /status shows ${id}`);
      t.equal(await presentedId(inbound, svidChainPem(me), svidKeyPem(me), bundle), id, `hint '${hint}': a TLS peer is shown ${id}`);
      await sidecar.stop();
    }

    // A hint no entry carries: no identity, and the sidecar says which hint it could not find.
    sidecar.start(config('nowhere'));
    const said = await until(
      async () => {
        if (sidecar.exited) return sidecar.exited;
        const r = await getStatus(`http://127.0.0.1:${admin}/readyz`);
        return r && r.status !== 200 && r.body.includes('nowhere') ? r.body : undefined;
      },
      'the sidecar with an unknown hint to report it',
      60_000,
      () => sidecar.stderr,
    );
    t.match(said, /no SVID with hint \\?"nowhere\\?"/, 'the missing hint is named');
    t.match(said, /internal|external/, 'with the hints there are');
  });
}
