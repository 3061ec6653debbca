import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const sidecarModule = fileURLToPath(new URL('../../src/sidecar.js', import.meta.url));

t.test('the sidecar loads without undici\'s index, and its Pool is undici\'s Pool', async (t) => {
  // In a fresh process: importing the whole sidecar must not load undici/index.js (fetch,
  // WebSocket, caches: 4-8 MiB per sidecar), yet Pool must have undici's request methods.
  const script = `
    const { createRequire } = await import('node:module');
    await import(${JSON.stringify(sidecarModule)});
    const { Pool } = await import(${JSON.stringify(fileURLToPath(new URL('../../src/undici/pool.js', import.meta.url)))});
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('undici'));
    console.log(JSON.stringify({ index: loaded.some((k) => /undici[\\\\/]index\\.js$/.test(k)), pool: loaded.some((k) => k.endsWith('pool.js')),
      stream: typeof Pool.prototype.stream, request: typeof Pool.prototype.request }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  t.same(out, { index: false, pool: true, stream: 'function', request: 'function' });
});

t.test('undici-pool exports the very class undici exports, and it dispatches', async (t) => {
  const { Pool } = await import('../../src/undici/pool.js');
  const undici = createRequire(import.meta.url)('undici') as typeof import('undici');
  t.equal(Pool, undici.Pool);
  const http = await import('node:http');
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const pool = new Pool(`http://127.0.0.1:${port}`);
  try {
    const res = await pool.request({ path: '/', method: 'GET' });
    t.equal(res.statusCode, 200);
    t.equal(await res.body.text(), 'ok');
  } finally {
    await pool.close();
    server.close();
  }
});
