/**
 * Durability under kill -9: a child revokes IDs in a tight loop and is SIGKILLed at a random
 * moment. The state file must always parse and hold a prefix of the revocation sequence that
 * includes every revocation the child reported durable.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseLocalList } from '../../src/revocation/local-file.js';
import { RevocationStore } from '../../src/revocation/store.js';
import { quietLogger } from '../helpers/logger.js';

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'revoke-loop-child.js');

/** Runs the child until it has acknowledged at least one revocation, then kills it after `delayMs`. */
function runAndKill(stateFile: string, mode: string, delayMs: number): Promise<{ lastAck: number; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript, stateFile, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let lastAck = -1;
    let out = '';
    let err = '';
    let killTimer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const m = /^ack (\d+)$/.exec(line);
        if (m) lastAck = Math.max(lastAck, Number(m[1]));
      }
      if (lastAck >= 0 && !killTimer) killTimer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(guard);
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited on its own (${signal ?? _code}): ${err}`));
      resolve({ lastAck, signal });
    });
  });
}

const rounds: [string, number][] = [
  ['sequential', 0],
  ['sequential', 9],
  ['sequential', 31],
  ['burst', 0],
  ['burst', 5],
  ['burst', 23],
];

t.test('kill -9 in a tight revoke loop leaves a parseable prefix', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'revocation-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // All children at once: the rounds are independent and mostly wait on process start and fsync.
  const runs = await Promise.all(
    rounds.map(async ([mode, delayMs], i) => {
      const stateFile = path.join(dir, `round-${i}`, 'revocations.json');
      return { mode, delayMs, stateFile, ...(await runAndKill(stateFile, mode, delayMs)) };
    }),
  );
  for (const { mode, delayMs, stateFile, lastAck } of runs) {
    t.test(`${mode} revocations, killed ${delayMs} ms after the first ack`, async (t) => {
      t.ok(lastAck >= 0, `child acknowledged revocations up to ${lastAck}`);
      // The file parses on its own (no half-written JSON) ...
      const text = readFileSync(stateFile, 'utf8');
      const list = parseLocalList(text, stateFile);
      const ids = [...list.byId.keys()];
      // ... holds exactly agent-0 .. agent-(n-1) in order ...
      t.same(ids, ids.map((_, i) => `spiffe://td/agent-${i}`), 'a prefix of the revocation sequence');
      // ... and nothing acknowledged as durable is missing.
      t.ok(ids.length >= lastAck + 1, `${ids.length} persisted >= ${lastAck + 1} acknowledged`);
      t.equal(list.byId.get('spiffe://td/agent-0')?.reason, 'r0');

      // A restarted sidecar opens it, removes the dead writer's temp file, and enforces it.
      const temps = readdirSync(path.dirname(stateFile)).filter((n) => n.endsWith('.tmp'));
      t.comment(`temp files left by the killed writer: ${temps.length}`);
      const store = await RevocationStore.open({ stateFile, logger: quietLogger });
      t.teardown(() => store.close());
      t.equal(store.current().size, ids.length);
      t.ok(store.current().isRevoked('spiffe://td/agent-0'));
      t.same(readdirSync(path.dirname(stateFile)).filter((n) => n.endsWith('.tmp')), [], 'no temp files left');
    });
  }
});
