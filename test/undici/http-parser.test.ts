/**
 * Sidecars compile undici's WebAssembly HTTP parser at start-up (src/undici/http-parser.ts). What
 * a test can assert is behaviour: the call is idempotent, and afterwards the data plane's undici
 * Pool still parses HTTP/1.1 correctly (fixed length, chunked, many headers, keep-alive reuse),
 * with the SIMD build and without it. When and how V8 compiles is an engine internal that load
 * changes, so it is not asserted. Each build runs in its own child: the choice of build and the
 * V8 flags the call sets are process-wide.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/undici');

const CHILD = `
import { createServer } from 'node:http';
const { compileHttpParserEagerly } = await import(${JSON.stringify(path.join(dist, 'http-parser.js'))});
compileHttpParserEagerly();
compileHttpParserEagerly();
const { Pool } = await import(${JSON.stringify(path.join(dist, 'pool.js'))});
const big = 'x'.repeat(200_000);
const server = createServer((req, res) => {
  if (req.url === '/chunked') {
    res.write('a'.repeat(10));
    res.write('b'.repeat(70_000));
    res.end('c');
    return;
  }
  if (req.url === '/headers') {
    for (let i = 0; i < 60; i++) res.setHeader('x-h' + i, 'v' + i);
    res.end('h');
    return;
  }
  if (req.url === '/echo') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => res.end(JSON.stringify({ method: req.method, length: body.length, te: req.headers['transfer-encoding'] ?? null })));
    return;
  }
  res.setHeader('content-length', String(big.length));
  res.end(big);
});
let connections = 0;
server.on('connection', () => connections++);
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pool = new Pool('http://127.0.0.1:' + server.address().port, { connections: 2 });
const out = { chunked: [], fixed: [], headers: [], echo: [] };
for (let i = 0; i < 20; i++) {
  const c = await pool.request({ path: '/chunked', method: 'GET' });
  const body = await c.body.text();
  out.chunked.push([c.statusCode, c.headers['transfer-encoding'], body.length, body.startsWith('aaaaaaaaaab'), body.endsWith('bc')]);
  const f = await pool.request({ path: '/fixed', method: 'GET' });
  out.fixed.push([f.statusCode, (await f.body.text()) === big]);
  const h = await pool.request({ path: '/headers', method: 'GET' });
  await h.body.text();
  out.headers.push([h.headers['x-h0'], h.headers['x-h59']]);
  const e = await pool.request({ path: '/echo', method: 'POST', body: 'y'.repeat(5000) });
  out.echo.push(await e.body.json());
}
await pool.close();
server.close();
console.log(JSON.stringify({ out, connections }));
`;

interface ChildResult {
  out: { chunked: unknown[][]; fixed: unknown[][]; headers: unknown[][]; echo: unknown[] };
  connections: number;
}

function runChild(simd: '0' | '1'): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      // Without the test runner's NODE_OPTIONS (its loader hooks): the child is plain Node.
      env: { ...process.env, NODE_OPTIONS: '', UNDICI_NO_WASM_SIMD: simd === '1' ? '0' : '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    // A bound only so that a wedged child fails the test instead of hanging the suite.
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) reject(new Error(`child exited with ${code ?? signal}: ${stderr.trim().slice(-500)}`));
      else resolve(JSON.parse(stdout) as ChildResult);
    });
  });
}

for (const simd of ['1', '0'] as const) {
  t.test(`compiled twice at start-up (${simd === '1' ? 'SIMD' : 'no SIMD'} build), undici still parses every response`, async (t) => {
    const { out, connections } = await runChild(simd);
    t.same(new Set(out.chunked.map((r) => JSON.stringify(r))), new Set([JSON.stringify([200, 'chunked', 70_011, true, true])]), 'chunked bodies whole');
    t.same(new Set(out.fixed.map((r) => JSON.stringify(r))), new Set([JSON.stringify([200, true])]), 'a 200 kB content-length body whole');
    t.same(new Set(out.headers.map((r) => JSON.stringify(r))), new Set([JSON.stringify(['v0', 'v59'])]), 'sixty response headers');
    t.same(new Set(out.echo.map((r) => JSON.stringify(r))), new Set([JSON.stringify({ method: 'POST', length: 5000, te: null })]), 'request bodies sent with their length');
    t.equal(out.chunked.length, 20);
    t.ok(connections <= 2, `kept-alive connections reused (${connections} for 80 requests)`);
  });
}
