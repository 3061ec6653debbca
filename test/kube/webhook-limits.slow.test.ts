/**
 * The webhook's bounds over real TLS connections: a client that stops sending in the middle of a
 * review is cut off (whole-request timeout) while other clients keep being answered.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import https from 'node:https';
import t from 'tap';
import { InjectorServer } from '../../src/kube/webhook-server.js';
import { quietLogger } from '../helpers/logger.js';
import { webCertificate } from '../helpers/web-ca.js';

const dir = mkdtempSync(path.join(tmpdir(), 'attest-injector-limits-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const { caFile, certPem, keyPem } = webCertificate(dir);
writeFileSync(path.join(dir, 'tls.crt'), certPem);
writeFileSync(path.join(dir, 'tls.key'), keyPem);
const server = await InjectorServer.start({ host: '127.0.0.1', port: 0, certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key'), image: 'i:1', logger: quietLogger });
t.teardown(() => server.close());
const ca = readFileSync(caFile);

function healthz(): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port: server.port, path: '/healthz', servername: 'localhost', ca, agent: false, timeout: 30_000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

t.test('a stalled request body is cut off; other clients are still answered', async (t) => {
  const socket = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  socket.write('POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"apiVersion":');
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('utf8')));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  t.equal(await healthz(), 200, 'answered while the stalled request is open');
  // Bounded wait: the whole-request timeout (15 s) plus the deadline check interval, with margin.
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => (timer = setTimeout(() => r('still open'), 90_000)))]);
  clearTimeout(timer);
  socket.destroy();
  t.equal(outcome, 'closed', 'the stalled connection is closed by the server');
  t.match(answer, /^HTTP\/1\.1 408 /, 'with a 408 answer');
  t.equal(await healthz(), 200);
});
