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
console.error('=== compiled');
await new Promise((r) => process.stdin.once('data', r));
const server = createServer((req, res) => res.end('{"ok":true}'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pool = new Pool('http://127.0.0.1:' + server.address().port, { connections: 4 });
for (let i = 0; i < 200; i++) await (await pool.request({ path: '/x', method: 'GET' })).body.text();
await pool.close();
// Exiting ends V8's background compiles: wait for the parent to have read them all.
console.error('=== done');
await new Promise((r) => process.stdin.once('data', r));
process.exit(0);
`;

/** One compiled function: "Compiled function 0x14c79100#58 using Liftoff, took ...". */
interface Compile {
  /** V8's native module: a second one would be a second compile of the parser. */
  module: string;
  fn: string;
  tier: 'Liftoff' | 'TurboFan';
  /** Peak compiler memory (TurboFan's "took N ms and MAX / TOTAL" bytes), else 0. */
  bytes: number;
}

interface Trace {
  /** Compiles read before the parent said go, and after it. */
  before: Compile[];
  after: Compile[];
}

/** One compile record of V8's trace, up to its byte counts: module, function, tier, peak bytes. */
const COMPILE = /Compiled function (0x[0-9a-f]+)#(\d+) using (Liftoff|TurboFan), took \d+ ms and (\d+)( \/ \d+)?/g;
const BIG = 10e6;

/**
 * Runs the child and says go once the start-up compile (if any) has finished in the background:
 * every function compiled with Liftoff also compiled with TurboFan (eager runs), or else no
 * compile line for 3 s (2 s in control runs) after the child's marker. The marker comes on
 * stderr, apart from the trace on stdout: V8 writes its trace from compiler threads, and a marker
 * on the same pipe was once cut into a trace line under load. Lines read after go arrived after
 * it. In CI under load the trace did not always come line by line (records merged, some lost,
 * the rest late), so the eager test's verdict rests on what was compiled, not on when a line
 * arrived. The trace is read to the end of the pipe ('close'), not just to the child's exit,
 * and the child exits only when told to after its requests: at once in control runs, and in
 * eager runs once every function has its TurboFan compile (or after 20 s), since exiting ends
 * the compiles still running in the background (CI once saw 3 of 52 when go came early).
 */
function run(eager: boolean): Promise<Trace> {
  return new Promise((resolve, reject) => {
    // V8 prints its trace with C stdio, which buffers a pipe in 4 KiB blocks: stdbuf makes it
    // line-buffered, so each line arrives when the compile it reports has happened.
    const child = spawn('stdbuf', ['-oL', process.execPath, '--trace-wasm-compilation-times', '--input-type=module', '-e', CHILD], {
      // Without the test runner's NODE_OPTIONS (its loader hooks): the child is plain Node.
      env: { ...process.env, NODE_OPTIONS: '', EAGER: eager ? '1' : '0' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const trace: Trace = { before: [], after: [] };
    let compiled = false;
    let goSent = false;
    let done = false;
    let exitSent = false;
    let exitWait: NodeJS.Timeout | undefined;
    let sawBig = false;
    const liftoff = new Set<string>();
    const turbofan = new Set<string>();
    const eagerDone = () => turbofan.size > 0 && [...liftoff].every((id) => turbofan.has(id));
    let settle: NodeJS.Timeout | undefined;
    let timedOut = false;
    let stderr = '';
    const timeout = setTimeout(() => {
      timedOut = true;
      child.kill();
    }, 60_000);
    const sendExit = () => {
      if (exitSent) return;
      exitSent = true;
      clearTimeout(exitWait);
      child.stdin.write('exit\n');
    };
    const maybeExit = () => {
      if (done && (!eager || (sawBig && eagerDone()))) sendExit();
    };
    const armGo = () => {
      clearTimeout(settle);
      settle = setTimeout(() => {
        goSent = true;
        child.stdin.write('go\n');
      }, eager ? (sawBig && eagerDone() ? 200 : 3000) : 2000);
    };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (!compiled && stderr.includes('=== compiled\n')) {
        compiled = true;
        armGo();
      }
      if (!done && stderr.includes('=== done\n')) {
        done = true;
        exitWait = setTimeout(sendExit, 20_000);
        maybeExit();
      }
    });
    // Whole text, scanned for every compile record: under load two compiler threads' lines
    // have come merged into one (CI), so a line may hold more than one.
    let text = '';
    let scanned = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      text += chunk;
      const end = text.lastIndexOf('\n') + 1;
      if (end <= scanned) return;
      for (const m of text.slice(scanned, end).matchAll(COMPILE)) {
        const c: Compile = { module: m[1]!, fn: m[2]!, tier: m[3] as Compile['tier'], bytes: m[5] ? Number(m[4]) : 0 };
        (goSent ? trace.after : trace.before).push(c);
        (c.tier === 'Liftoff' ? liftoff : turbofan).add(`${c.module}#${c.fn}`);
        if (c.bytes > BIG) sawBig = true;
      }
      scanned = end;
      if (compiled && !goSent) armGo();
      maybeExit();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timeout);
      clearTimeout(settle);
      clearTimeout(exitWait);
      const seen = `marker ${compiled ? 'seen' : 'not seen'}, big function ${sawBig ? 'compiled' : 'not compiled'}, ${turbofan.size} of ${liftoff.size} functions with TurboFan, go ${goSent ? 'sent' : 'not sent'}, requests ${done ? 'done' : 'not done'}, exit ${exitSent ? 'sent' : 'not sent'}, ${trace.before.length} compile lines before go, ${trace.after.length} after; stderr: ${stderr.trim().slice(-300)}`;
      if (timedOut) reject(new Error(`child did not finish within 60 s (${seen})`));
      else if (code !== 0) reject(new Error(`child exited with ${code} (${seen})`));
      else resolve(trace);
    });
  });
}

t.test('compiled at start-up with both tiers; undici compiles nothing of its own under load', async (t) => {
  const trace = await run(true);
  const compiles = [...trace.before, ...trace.after];
  // V8 names each native module: a second one would be undici compiling the parser again.
  const modules = new Set(compiles.map((c) => c.module));
  t.equal(modules.size, 1, `one compiled module: the start-up one, which undici's Pool reused from V8's cache (${[...modules].join(', ')})`);
  const of = (tier: Compile['tier']) => compiles.filter((c) => c.tier === tier).map((c) => c.fn).sort();
  const liftoff = of('Liftoff');
  const turbofan = of('TurboFan');
  t.ok(liftoff.length >= 10, `the parser's functions were compiled with Liftoff (${liftoff.length})`);
  t.ok(turbofan.length >= 10, `and with TurboFan (${turbofan.length}), not only the ones traffic made hot`);
  // Not turbofan == liftoff: under load some trace lines have come garbled beyond recovery.
  t.same(turbofan, [...new Set(turbofan)], 'no function compiled twice with TurboFan');
  t.same(liftoff, [...new Set(liftoff)], 'nor twice with Liftoff');
  const largest = Math.max(...compiles.map((c) => c.bytes));
  t.ok(largest > BIG, `including the big one (${(largest / 1e6).toFixed(1)} MB of compiler memory)`);
  if (trace.after.length === 0) t.pass('and all of it before the first request (the trace arrived line by line)');
  else t.comment(`${trace.after.length} of ${compiles.length} compile records arrived after go: the trace came late, so their timing is unknown`);
});

t.test('control: without it, the parser is compiled when requests flow', async (t) => {
  const trace = await run(false);
  t.same(trace.before, [], 'nothing compiled before the first request');
  t.ok(trace.after.length > 0, `compiled under load instead (${trace.after.length} functions)`);
});
