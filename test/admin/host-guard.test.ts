/** The admin listener's DNS-rebinding guard: only IP literals, localhost and listed names. */
import http from 'node:http';
import t from 'tap';
import { hostAllowed } from '../../src/admin/server.js';
import { TestMesh } from '../helpers/mesh.js';

t.test('hostAllowed', async (t) => {
  for (const h of ['127.0.0.1:15000', '127.0.0.1', '[::1]:15000', 'localhost:15000', 'LOCALHOST', '10.1.2.3:9', 'localhost.']) t.ok(hostAllowed(h), h);
  for (const h of [undefined, '', 'evil.example', 'evil.example:15000', '127.0.0.1.nip.io:15000', 'localhost.evil.example']) t.notOk(hostAllowed(h), String(h));
  t.ok(hostAllowed('sidecar.ns.svc:15000', ['sidecar.ns.svc']), 'a listed name');
});

t.test('a rebound name is refused on every admin endpoint, an IP is served', async (t) => {
  const mesh = await TestMesh.start({ agents: [] });
  t.teardown(() => mesh.close());
  const port = mesh.server.admin!.address()!.port;
  const get = (path: string, host: string, method = 'GET') =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
  for (const path of ['/', '/status', '/metrics']) {
    const r = await get(path, `evil.example:${port}`);
    t.equal(r.status, 403, `${path} refused for a foreign Host`);
    t.match(JSON.parse(r.body).error, /not allowed/);
  }
  t.equal((await get('/v1/kill', 'evil.example', 'POST')).status, 403, 'the API too');
  t.equal((await get('/status', `127.0.0.1:${port}`)).status, 200);
  t.equal((await get('/', `localhost:${port}`)).status, 200);
});
