/**
 * DEVELOPMENT AND TEST ONLY: child processes that are always stopped by pid. Output goes to a
 * log file (no pipe to drain, nothing lost when the parent is busy); on an unexpected exit the
 * tail of that file explains why. Every live child is killed when this process exits, so a
 * crashed test run leaves no SPIRE server behind.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { SidecarError } from '../../errors.js';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** The last `bytes` of a file, or '' when it cannot be read. */
export function fileTail(file: string, bytes = 4000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

export class Child {
  readonly name: string;
  readonly logFile: string;
  private readonly proc: ChildProcess;
  private readonly exited: Promise<void>;
  private exitDescription: string | undefined;

  constructor(name: string, file: string, args: readonly string[], opts: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv }) {
    installExitHook();
    this.name = name;
    this.logFile = opts.logFile;
    const fd = openSync(opts.logFile, 'a', 0o600);
    try {
      // Its own process group: a terminal's Ctrl-C reaches the parent, which stops children in order.
      this.proc = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', fd, fd], env: opts.env ?? process.env, detached: true });
    } finally {
      closeSync(fd);
    }
    live.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (err) => {
        this.exitDescription = `could not start: ${err.message}`;
        live.delete(this.proc);
        resolve();
      });
      this.proc.once('exit', (code, signal) => {
        this.exitDescription = signal ? `killed by ${signal}` : `exited with ${code}`;
        live.delete(this.proc);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** undefined while running; else how it ended. */
  get ended(): string | undefined {
    return this.exitDescription;
  }

  /** How it ended and the tail of its log, for error messages. */
  describe(): string {
    return `${this.name} (pid ${this.pid ?? '-'}, ${this.exitDescription ?? 'running'}); log ${this.logFile}:\n${fileTail(this.logFile)}`;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exitDescription !== undefined) return;
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by `timeoutMs`); rejects with its output when it fails. */
export function run(file: string, args: readonly string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 8 * 1024 * 1024, cwd: opts.cwd, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        const what = `${file.split('/').pop()} ${args.join(' ')}`;
        reject(new SidecarError('dev_spire_failed', `${what}: ${err.message.split('\n')[0]}${stderr ? `\n${stderr.trim()}` : ''}${stdout ? `\n${stdout.trim()}` : ''}`, { cause: err }));
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}
