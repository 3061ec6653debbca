/**
 * The identity-source registry: each name opens its real source, and everything a factory
 * opened is registered for closing, also when the factory fails half way.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { DevCa } from '../../src/dev/ca.js';
import { openIdentitySource } from '../../src/identity/sources.js';

const logger = createLogger({ level: 'silent' });
const ID = 'spiffe://example.org/workload';

function closes() {
  const stack: (() => unknown)[] = [];
  return {
    stack,
    ctx: { logger, defer: (close: () => unknown) => void stack.push(close) },
    async closeAll() {
      while (stack.length) await stack.pop()!();
    },
  };
}

t.test('files: opens the identity the files hold', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'identity-sources-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const issued = await ca.issueX509Svid(ID);
  const files = { cert: path.join(dir, 'svid.pem'), key: path.join(dir, 'key.pem'), bundle: path.join(dir, 'bundle.pem') };
  writeFileSync(files.cert, issued.certChainPem);
  writeFileSync(files.key, issued.keyPem, { mode: 0o600 });
  writeFileSync(files.bundle, ca.rootPem());
  const parts = closes();
  t.teardown(() => parts.closeAll());
  const source = await openIdentitySource({ source: 'files', ...files, federated: {}, startupTimeoutMs: 20_000 }, parts.ctx);
  t.equal(source.current()?.svid.id.toString(), ID);
  t.equal(parts.stack.length, 1, 'the source is registered for closing');
});

t.test('files: a folder that does not exist refuses the start, and the source is closed', async (t) => {
  const missing = path.join(tmpdir(), 'identity-sources-missing', String(process.pid));
  const parts = closes();
  const files = { cert: path.join(missing, 'a.pem'), key: path.join(missing, 'k.pem'), bundle: path.join(missing, 'b.pem') };
  const err = await openIdentitySource({ source: 'files', ...files, federated: {}, startupTimeoutMs: 20_000 }, parts.ctx).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { reason: 'identity_files_invalid' }, 'refused with the files reason');
  t.equal(parts.stack.length, 1, 'what was opened before the failure is registered');
  await parts.closeAll();
});

t.test('dev: a private issuer and a Workload API source, closed source first', async (t) => {
  const parts = closes();
  t.teardown(() => parts.closeAll());
  const source = await openIdentitySource({ source: 'dev', spiffeId: ID, svidTtlSeconds: 60, startupTimeoutMs: 20_000 }, parts.ctx);
  const state = await source.waitReady(20_000);
  t.equal(state.svid.id.toString(), ID);
  t.equal(parts.stack.length, 2, 'the issuer, then the source');
  await parts.stack.pop()!();
  t.equal(source.health().connected, false, 'the newest registration closes the source');
});
