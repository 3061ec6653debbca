/**
 * undici's WebAssembly HTTP parser is compiled at start-up, with both tiers, and undici reuses
 * that code: no function is compiled once requests flow. Checked with V8's own compile trace
 * (--trace-wasm-compilation-times, one line per compiled function) in a child process that
 * proxies nothing: it compiles (or not), waits for the parent's go, then makes 200 requests
 * through the data plane's undici Pool to a local HTTP server. The control run without the
 * start-up compile shows the trace does see compiles that happen under load.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/proxy');

const CHILD = `
import { createServer } from 'node:http';
const { Pool } = await import(${JSON.stringify(path.join(dist, 'undici-pool.js'))});
if (process.env.EAGER === '1') (await import(${JSON.stringify(path.join(dist, 'http-parser.js'))})).compileHttpParserEagerly();
console.log('=== compiled');
await new Promise((r) => process.stdin.once('data', r));
console.log('=== requests');
const server = createServer((req, res) => res.end('{"ok":true}'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pool = new Pool('http://127.0.0.1:' + server.address().port, { connections: 4 });
for (let i = 0; i < 200; i++) await (await pool.request({ path: '/x', method: 'GET' })).body.text();
console.log('=== done');
await pool.close();
server.close();
process.stdin.destroy();
`;

interface Trace {
  /** Compile lines before the parent said go, and after it. */
  before: string[];
  after: string[];
}

/** Runs the child; says go once the start-up compile (if any) has finished in the background. */
function run(eager: boolean): Promise<Trace> {
  return new Promise((resolve, reject) => {
    // V8 prints its trace with C stdio, which buffers a pipe in 4 KiB blocks: stdbuf makes it
    // line-buffered, so each line arrives when the compile it reports has happened.
    const child = spawn('stdbuf', ['-oL', process.execPath, '--trace-wasm-compilation-times', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, EAGER: eager ? '1' : '0' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const trace: Trace = { before: [], after: [] };
    let phase: 'start' | 'compiled' | 'requests' = 'start';
    let buffered = '';
    let settle: NodeJS.Timeout | undefined;
    const timeout = setTimeout(() => child.kill(), 30_000);
    // Go once no compile line has arrived for 500 ms after '=== compiled': TurboFan runs in the background.
    const armGo = () => {
      clearTimeout(settle);
      settle = setTimeout(() => child.stdin.write('go\n'), 500);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === '=== compiled') {
          phase = 'compiled';
          armGo();
        } else if (line === '=== requests') phase = 'requests';
        else if (line.startsWith('Compiled function')) {
          (phase === 'requests' ? trace.after : trace.before).push(line);
          if (phase === 'compiled') armGo();
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timeout);
      clearTimeout(settle);
      if (code !== 0) reject(new Error(`child exited with ${code}`));
      else resolve(trace);
    });
  });
}

t.test('compiled at start-up with TurboFan; nothing compiled while requests flow', async (t) => {
  const trace = await run(true);
  const turbofan = trace.before.filter((l) => l.includes('using TurboFan'));
  t.ok(turbofan.length >= 10, `the parser's functions were compiled with TurboFan at start-up (${turbofan.length})`);
  const largest = Math.max(...turbofan.map((l) => Number(/and (\d+) \//.exec(l)?.[1] ?? 0)));
  t.ok(largest > 10e6, `including the big one (${(largest / 1e6).toFixed(1)} MB of compiler memory), now at start-up`);
  t.same(trace.after, [], '200 requests through the Pool compiled nothing');
});

t.test('control: without it, the parser is compiled when requests flow', async (t) => {
  const trace = await run(false);
  t.same(trace.before, [], 'nothing compiled before the first request');
  t.ok(trace.after.length > 0, `compiled under load instead (${trace.after.length} functions)`);
});
