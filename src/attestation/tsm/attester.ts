/**
 * Evidence from the Linux configfs-tsm report interface (Documentation/ABI/testing/
 * configfs-tsm-report): one directory per request under /sys/kernel/config/tsm/report.
 *
 *   mkdir <base>/<entry>          the kernel populates the attribute files
 *   provider                      "sev_guest" / "tdx_guest"
 *   privlevel (optional)          SEV: the VMPL to request the report at
 *   generation                    bumped on every write to inblob / options
 *   inblob  <- 64 bytes           the user data (SNP REPORT_DATA / TDX REPORTDATA)
 *   outblob ->                    the report / quote (generated on read)
 *   auxblob ->                    SNP: the certificate table (VCEK/ASK/ARK), may be empty
 *   rmdir <base>/<entry>
 *
 * Any other writer to the same entry between our inblob write and our outblob read would hand
 * us a report for someone else's data; the generation counter exposes that, and we retry.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { SidecarError } from '../../errors.js';

export const TSM_REPORT_BASE = '/sys/kernel/config/tsm/report';
export const TSM_INBLOB_SIZE = 64;
const DEFAULT_PROVIDERS = ['sev_guest', 'tdx_guest'] as const;

export type TsmReason =
  | 'tsm_unavailable' // no configfs-tsm, no permission, or the provider went away
  | 'tsm_unsupported_provider'
  | 'tsm_busy' // EBUSY from the kernel
  | 'tsm_race' // the generation kept changing under us
  | 'tsm_bad_request' // bad user data or privlevel
  | 'tsm_failed'; // anything else the kernel refused

export class TsmError extends SidecarError {
  declare readonly reason: TsmReason;
  constructor(reason: TsmReason, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
  }
}

/** The file operations used; node:fs/promises by default (a seam for tests, nothing else). */
export interface TsmFileOps {
  mkdir(p: string): Promise<unknown>;
  rmdir(p: string): Promise<void>;
  readFile(p: string): Promise<Buffer>;
  writeFile(p: string, data: Uint8Array | string): Promise<void>;
  stat(p: string): Promise<{ isDirectory(): boolean }>;
  unlink(p: string): Promise<void>;
}

export interface TsmAttesterOptions {
  basePath?: string;
  /** SEV: VMPL (0..3) to request the report at; left to the kernel default when absent. */
  privlevel?: number;
  /** Providers accepted (default sev_guest and tdx_guest). */
  providers?: readonly string[];
  /** Attempts when the generation changes under us (default 3). */
  maxAttempts?: number;
  fs?: TsmFileOps;
}

export interface TsmReport {
  provider: string;
  outblob: Buffer;
  auxblob?: Buffer;
  generation: number;
}

const ATTRIBUTE_FILES = ['inblob', 'outblob', 'auxblob', 'generation', 'provider', 'privlevel', 'privlevel_floor'];

export class TsmAttester {
  readonly basePath: string;
  private readonly privlevel: number | undefined;
  private readonly providers: readonly string[];
  private readonly maxAttempts: number;
  private readonly fs: TsmFileOps;

  constructor(opts: TsmAttesterOptions = {}) {
    this.basePath = opts.basePath ?? TSM_REPORT_BASE;
    if (opts.privlevel !== undefined && !(Number.isInteger(opts.privlevel) && opts.privlevel >= 0 && opts.privlevel <= 3)) {
      throw new TsmError('tsm_bad_request', `privlevel must be an integer 0..3, got ${opts.privlevel}`);
    }
    this.privlevel = opts.privlevel;
    this.providers = opts.providers ?? DEFAULT_PROVIDERS;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.fs = opts.fs ?? (fsp as unknown as TsmFileOps);
  }

  async report(userData: Uint8Array): Promise<TsmReport> {
    if (!(userData instanceof Uint8Array) || userData.byteLength !== TSM_INBLOB_SIZE) {
      throw new TsmError('tsm_bad_request', `user data must be exactly ${TSM_INBLOB_SIZE} bytes`);
    }
    await this.checkInterface();
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const entry = path.join(this.basePath, `attest-sidecar-${process.pid}-${randomBytes(6).toString('hex')}`);
      await this.op('create the report entry', () => this.fs.mkdir(entry));
      try {
        const result = await this.attempt(entry, userData);
        if (result) return result;
      } finally {
        await this.remove(entry);
      }
    }
    throw new TsmError(
      'tsm_race',
      `configfs-tsm generation changed during each of ${this.maxAttempts} attempts (another writer is racing)`,
    );
  }

  /** One request in a fresh entry; undefined when another writer raced us. */
  private async attempt(entry: string, userData: Uint8Array): Promise<TsmReport | undefined> {
    const file = (name: string) => path.join(entry, name);
    const provider = (await this.op('read provider', () => this.fs.readFile(file('provider')))).toString('utf8').trim();
    if (!this.providers.includes(provider)) {
      throw new TsmError(
        'tsm_unsupported_provider',
        `configfs-tsm provider "${provider}" is not supported (supported: ${this.providers.join(', ')})`,
      );
    }
    if (this.privlevel !== undefined) {
      const level = String(this.privlevel);
      await this.op('write privlevel', () => this.fs.writeFile(file('privlevel'), level));
    }
    const before = await this.generation(file('generation'));
    await this.op('write inblob', () => this.fs.writeFile(file('inblob'), userData));
    const written = await this.generation(file('generation'));
    // Exactly our write must have happened in between: anything else is another writer.
    if (written !== before + 1) return undefined;
    const outblob = await this.op('read outblob', () => this.fs.readFile(file('outblob')));
    if (outblob.length === 0) throw new TsmError('tsm_failed', 'configfs-tsm returned an empty outblob');
    const auxblob = await this.readOptional(file('auxblob'));
    const after = await this.generation(file('generation'));
    if (after !== written) return undefined;
    const result: TsmReport = { provider, outblob, generation: after };
    if (auxblob && auxblob.length > 0) result.auxblob = auxblob;
    return result;
  }

  private async checkInterface(): Promise<void> {
    let isDir = false;
    try {
      isDir = (await this.fs.stat(this.basePath)).isDirectory();
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw mapError(err, 'inspect the configfs-tsm directory');
    }
    if (!isDir) {
      throw new TsmError(
        'tsm_unavailable',
        `configfs-tsm report interface not found at ${this.basePath} (kernel without CONFIG_TSM_REPORTS, configfs not mounted, or not a confidential guest)`,
      );
    }
  }

  private async generation(p: string): Promise<number> {
    const text = (await this.op('read generation', () => this.fs.readFile(p))).toString('utf8').trim();
    if (!/^\d+$/.test(text)) throw new TsmError('tsm_failed', `configfs-tsm generation "${text}" is not a number`);
    return Number(text);
  }

  private async readOptional(p: string): Promise<Buffer | undefined> {
    try {
      return await this.fs.readFile(p);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined; // older kernels / providers without auxblob
      throw mapError(err, 'read auxblob');
    }
  }

  /**
   * rmdir releases the configfs item with its attribute files. A plain directory standing in
   * for configfs (a tmpfs mock) refuses with ENOTEMPTY: then the known attribute files are
   * removed first. Cleanup failures are not reported: the evidence is already in hand.
   */
  private async remove(entry: string): Promise<void> {
    try {
      await this.fs.rmdir(entry);
    } catch (err) {
      if (errnoOf(err) !== 'ENOTEMPTY') return;
      for (const name of ATTRIBUTE_FILES) await this.fs.unlink(path.join(entry, name)).catch(() => undefined);
      await this.fs.rmdir(entry).catch(() => undefined);
    }
  }

  private async op<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapError(err, what);
    }
  }
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function mapError(err: unknown, what: string): TsmError {
  if (err instanceof TsmError) return err;
  const code = errnoOf(err);
  const detail = `configfs-tsm: cannot ${what}: ${(err as Error)?.message ?? String(err)}`;
  switch (code) {
    case 'EBUSY':
    case 'EAGAIN':
      return new TsmError('tsm_busy', `${detail} (the TSM is busy; retry later)`, { cause: err });
    case 'ENOENT':
    case 'ENXIO':
    case 'ENODEV':
    case 'EACCES':
    case 'EPERM':
    case 'EOPNOTSUPP':
      return new TsmError('tsm_unavailable', detail, { cause: err });
    case 'EINVAL':
      return new TsmError('tsm_bad_request', detail, { cause: err });
    default:
      return new TsmError('tsm_failed', detail, { cause: err });
  }
}
