/**
 * BudgetStore in Redis, shared by the replicas of an agent. Each charge is one Lua script that
 * checks and increments atomically on the server (`spent < limit` then INCRBY), so replicas
 * charging concurrently overshoot by at most one request's cost, like a single sidecar.
 *
 * Fail closed: no offline queue, a per-command timeout, and reconnection with backoff in the
 * background. While Redis is unreachable every charge rejects quickly with
 * SidecarError('budget_store_unavailable') (callers deny with 503); a charge that timed out may
 * still have been applied by the server, which errs on the side of spending. Redis error events
 * are logged on state changes, never thrown.
 *
 * Durability is Redis's: "acknowledged" means Redis replied. Run it with persistence (AOF) if a
 * restart must not reset budgets. Keys are `keyPrefix + key`; daily counters expire 40 days and
 * monthly ones 400 days after their period starts (PEXPIREAT, see period.ts), `total` never.
 */
import { createHash } from 'node:crypto';
import { createClient, ErrorReply } from 'redis';
import { SidecarError, errorMessage } from '../errors.js';
import { keyRetentionEndsAt } from './period.js';
import { checkChargeArgs, type BudgetStore, type ChargeResult } from './store.js';
import type { Logger } from '../lib/log.js';

export interface RedisBudgetStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** The AUTH password, when it is kept out of the URL (read from a secret file by the caller). */
  password?: string;
  keyPrefix?: string;
  /** Per-command and connect timeout; default 500 ms. */
  timeoutMs?: number;
  logger?: Logger;
}

interface LuaScript {
  text: string;
  sha: string;
}

function lua(text: string): LuaScript {
  return { text, sha: createHash('sha1').update(text).digest('hex') };
}

/** KEYS[1] key; ARGV amount, limit, expire-at ms (0: none). Returns {admitted 0|1, spent}. */
const CHARGE = lua(`local s = tonumber(redis.call('GET', KEYS[1]) or '0')
if s >= tonumber(ARGV[2]) then return {0, s} end
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return {1, v}`);

/** KEYS[1] key; ARGV delta, expire-at ms (0: none). Returns spent. */
const ADJUST = lua(`local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return v`);

type Client = ReturnType<typeof createClient>;

export class RedisBudgetStore implements BudgetStore {
  private readonly client: Client;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  /** Where Redis is, without credentials, for logs and errors. */
  private readonly where: string;
  private readonly seen = new Map<string, number>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private connected = false;
  /** An outage was logged; further retry errors stay quiet until the next 'ready'. */
  private reportedDown = false;
  private closed = false;

  private constructor(options: RedisBudgetStoreOptions) {
    this.prefix = options.keyPrefix ?? 'attest-sidecar:budget:';
    this.timeoutMs = options.timeoutMs ?? 500;
    this.logger = options.logger;
    this.where = redactUrl(options.url);
    try {
      this.client = createClient({
        url: options.url,
        ...(options.password !== undefined ? { password: options.password } : {}),
        disableOfflineQueue: true,
        socket: {
          connectTimeout: this.timeoutMs,
          reconnectStrategy: (retries) => Math.min(100 * 2 ** Math.min(retries, 4), 1000) + Math.floor(Math.random() * 100),
        },
      });
    } catch (err) {
      throw new SidecarError('budget_store_config', `invalid Redis URL for the budget store: ${describe(err)}`, { cause: err });
    }
    this.client.on('error', (err: unknown) => {
      if (!this.connected && this.reportedDown) return; // one line per outage, not one per retry
      this.connected = false;
      this.reportedDown = true;
      this.logger?.warn({ redis: this.where, err: describe(err) }, 'budget store: Redis unreachable; refusing budgeted requests');
    });
    this.client.on('ready', () => {
      this.connected = true;
      this.reportedDown = false;
      this.logger?.info({ redis: this.where }, 'budget store: connected to Redis');
    });
  }

  /**
   * Creates the client and waits up to `timeoutMs` for the first connection. An unreachable Redis
   * does not fail the open: budgeted charges reject until it is reachable (unbudgeted agents are
   * unaffected), and the client keeps reconnecting in the background.
   */
  static async open(options: RedisBudgetStoreOptions): Promise<RedisBudgetStore> {
    const store = new RedisBudgetStore(options);
    const connecting = store.client.connect().then(
      () => undefined,
      (err: unknown) => store.logger?.error({ redis: store.where, err: describe(err) }, 'budget store: Redis connect failed'),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([connecting, new Promise<void>((r) => (timer = setTimeout(r, store.timeoutMs)))]);
    clearTimeout(timer);
    return store;
  }

  /** True while the client has a working connection. */
  get ready(): boolean {
    return this.client.isReady;
  }

  async charge(key: string, amountMicros: number, limitMicros: number): Promise<ChargeResult> {
    checkChargeArgs(key, amountMicros, 'amount', false);
    checkChargeArgs(key, limitMicros, 'limit', false);
    const reply = await this.run(CHARGE, key, [amountMicros, limitMicros, keyRetentionEndsAt(key) ?? 0]);
    if (!Array.isArray(reply) || reply.length !== 2 || !reply.every((v) => typeof v === 'number')) {
      throw this.unexpected(reply);
    }
    const [admitted, spent] = reply as [number, number];
    this.seen.set(key, spent);
    return { ok: admitted === 1, spentMicros: spent };
  }

  async adjust(key: string, deltaMicros: number): Promise<{ spentMicros: number }> {
    checkChargeArgs(key, deltaMicros, 'delta', true);
    const reply = await this.run(ADJUST, key, [deltaMicros, keyRetentionEndsAt(key) ?? 0]);
    if (typeof reply !== 'number') throw this.unexpected(reply);
    this.seen.set(key, reply);
    return { spentMicros: reply };
  }

  peek(key: string): number | undefined {
    return this.seen.get(key);
  }

  entries(): Iterable<[string, number]> {
    return [...this.seen];
  }

  /** Lets in-flight commands finish (each is bounded by the timeout), then drops the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    if (this.client.isOpen) this.client.destroy();
  }

  /** EVALSHA, falling back to EVAL when the server lost its script cache (restart, SCRIPT FLUSH). */
  private async run(script: LuaScript, key: string, args: number[]): Promise<unknown> {
    if (this.closed) throw new SidecarError('budget_store_unavailable', 'the Redis budget store is closed');
    const tail = ['1', this.prefix + key, ...args.map(String)];
    const options = { timeout: this.timeoutMs };
    const command = (async () => {
      try {
        return await this.client.sendCommand(['EVALSHA', script.sha, ...tail], options);
      } catch (err) {
        if (!(err instanceof ErrorReply && err.message.startsWith('NOSCRIPT'))) throw err;
        return await this.client.sendCommand(['EVAL', script.text, ...tail], options);
      }
    })();
    // node-redis times a command out only until it is written; a hung server would hold a written
    // one forever, so the deadline covers the whole round trip here.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply within ${this.timeoutMs} ms (timeout)`)), this.timeoutMs);
    });
    const bounded = Promise.race([command, deadline]).finally(() => clearTimeout(timer));
    command.catch(() => undefined); // a reply or error after the deadline is of no interest
    this.inFlight.add(bounded);
    try {
      return await bounded;
    } catch (err) {
      // A server-side error (READONLY, OOM, WRONGTYPE...) is a misconfiguration worth an error line.
      if (err instanceof ErrorReply) this.logger?.error({ redis: this.where, key, err: err.message }, 'budget store: Redis refused a command');
      throw new SidecarError('budget_store_unavailable', `budget store (Redis ${this.where}) unavailable: ${describe(err)}`, {
        cause: err,
      });
    } finally {
      this.inFlight.delete(bounded);
    }
  }

  private unexpected(reply: unknown): SidecarError {
    return new SidecarError('budget_store_unavailable', `budget store (Redis ${this.where}) sent an unexpected reply: ${JSON.stringify(reply)}`);
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** Connection errors are often AggregateErrors (one per address) with an empty message. */
function describe(err: unknown): string {
  const msg = errorMessage(err);
  if (msg) return msg;
  const shape = err as { code?: unknown; errors?: unknown[]; name?: unknown };
  if (typeof shape.code === 'string') return shape.code;
  if (Array.isArray(shape.errors) && shape.errors.length > 0) return shape.errors.map(describe).join('; ');
  return typeof shape.name === 'string' ? shape.name : 'unknown error';
}
