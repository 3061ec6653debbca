/**
 * A TLS 1.3 server refusing our client certificate sends its alert after the handshake has
 * completed on our side; the connector keeps that alert as the request's error (undici alone
 * reports the 'other side closed' that follows), so the outbound proxy can say why. The server
 * is `openssl s_server` (Node's own TLS server closes without sending the alert).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Pool as UndiciPool } from 'undici';
import { DevCa } from '../../src/dev/ca.js';
import { classifyUpstreamError } from '../../src/proxy/forward.js';
import { Pool, connectorKeepingTlsAlerts } from '../../src/undici/pool.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { freePort } from '../helpers/ports.js';

t.test('a client certificate refused after the handshake fails the request with the TLS alert', { skip: skipFor(toolsMissing(['openssl'], 'openssl')) }, async (t) => {
  const ours = await DevCa.create({ trustDomain: 'ours.test' });
  const theirs = await DevCa.create({ trustDomain: 'theirs.test' });
  const serverSvid = await theirs.issueX509Svid('spiffe://theirs.test/server');
  const clientSvid = await ours.issueX509Svid('spiffe://ours.test/client');
  const dir = mkdtempSync(path.join(tmpdir(), 'tls-alert-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => (writeFileSync(path.join(dir, name), text), path.join(dir, name));
  const port = await freePort();
  // Trusts only its own CA: our certificate is refused with an alert.
  const server = spawn('openssl', ['s_server', '-quiet', '-accept', `127.0.0.1:${port}`, '-tls1_3', '-www', '-cert', file('s.pem', serverSvid.certChainPem),
    '-key', file('s-key.pem', serverSvid.keyPem), '-CAfile', file('ca.pem', theirs.rootPem()), '-Verify', '1', '-verify_return_error'], { stdio: 'ignore' });
  t.teardown(() => server.kill('SIGKILL'));

  const pool = new Pool(`https://127.0.0.1:${port}`, {
    connect: connectorKeepingTlsAlerts({ cert: clientSvid.certChainPem, key: clientSvid.keyPem, ca: theirs.rootPem(), rejectUnauthorized: false, maxCachedSessions: 0 }) as UndiciPool.Options['connect'],
  });
  t.teardown(() => pool.destroy());
  let err: NodeJS.ErrnoException | undefined;
  for (let i = 0; i < 300; i++) {
    err = await pool.request({ path: '/', method: 'GET' }).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    if (err?.code !== 'ECONNREFUSED') break; // s_server still starting
    await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(err, 'the request failed');
  t.match(err!.code, /^ERR_SSL_/, `the alert, not undici's 'other side closed' (${err!.code}: ${err!.message})`);
  t.same(classifyUpstreamError(err), { status: 502, reason: 'upstream_tls_error', message: "Upstream TLS failure: the upstream sent the TLS alert 'unknown ca'" });
});
