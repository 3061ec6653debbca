/**
 * A throwaway real redis-server for tests: no persistence, loopback only, its own temp dir.
 * Missing binary: a skip with the reason, a failure under CI=true (test/helpers/needs.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import type { Test } from 'tap';
import { skipFor } from '../helpers/needs.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from './helpers.js';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

/** false when redis-server can be used; otherwise why the test is skipped. Throws when CI=true. */
export function redisSkipReason(): string | false {
  return skipFor(existsSync(REDIS_SERVER) ? undefined : `not installed: ${REDIS_SERVER} (apt-get install redis-server)`);
}

export class RedisServer {
  readonly port: number;
  readonly url: string;
  readonly #dir: string;
  readonly #password: string | undefined;
  #proc: ChildProcess | undefined;

  private constructor(port: number, dir: string, password?: string) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.#dir = dir;
    this.#password = password;
  }

  /** Starts a server on a free port (with `password`, clients must AUTH); stopped in t.teardown. */
  static async start(t: Test, opts: { password?: string } = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), tempDir(t, 'budget-redis-'), opts.password);
    t.teardown(() => server.stop());
    await server.restart();
    return server;
  }

  /** (Re)starts the server on the same port and waits until it accepts connections. */
  async restart(): Promise<void> {
    await this.stop();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.#dir];
    if (this.#password !== undefined) args.push('--requirepass', this.#password);
    const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#proc = proc;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // Generous: a loaded machine can take seconds to start it.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}): ${stderr}`);
      if (await canConnect(this.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not listen on ${this.port} within 60 s: ${stderr}`);
  }

  /** Kills the server (SIGKILL: like a crash or a network cut) and waits for it to exit. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP / SIGCONT: a server that accepts nothing and answers nothing (hung, partitioned). */
  pause(): void {
    this.#proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.#proc?.kill('SIGCONT');
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
