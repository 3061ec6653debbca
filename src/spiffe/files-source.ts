/**
 * X509Source from PEM files (cert chain, key, own bundle, federated bundles), e.g. written by a
 * spiffe-helper or a cert-manager CSI volume. The containing directories are watched (fs.watch)
 * with a low-rate poll as a fallback, debounced, so an atomically replaced file (write temp +
 * rename; Kubernetes' ..data symlink swap) is picked up without a restart. A half-written or
 * inconsistent set (e.g. new cert, old key) is rejected: the previous good state is kept and the
 * error reported through health() and the logger.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SidecarError, errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { parseTrustDomain, type TrustDomain } from './id.js';
import { parseX509Svid } from './svid.js';
import { X509Bundle } from './bundle/x509-bundle.js';
import { BundleSet } from './bundle/bundle-set.js';
import { certificateFacts } from './x509.js';
import { BaseX509Source, type IdentityState } from './source.js';
import type { Logger } from '../lib/log.js';

export interface FilesX509SourceOptions {
  /** PEM chain, leaf first. */
  cert: string;
  /** PEM private key (PKCS#8, SEC1 or PKCS#1). */
  key: string;
  /** PEM bundle of the SVID's own trust domain. */
  bundle: string;
  /** trust domain ('td' or 'spiffe://td') -> PEM bundle file. */
  federated?: Record<string, string>;
  logger?: Logger;
  /** Quiet period after a change before reloading (lets writers finish a set). Default 100 ms. */
  debounceMs?: number;
  /** Fallback poll interval (fs.watch misses events on some filesystems). Default 5000 ms. */
  pollIntervalMs?: number;
}

interface FileSet {
  cert: Buffer;
  key: Buffer;
  bundle: Buffer;
  federated: [string, Buffer][];
}

export class FilesX509Source extends BaseX509Source {
  private readonly opts: FilesX509SourceOptions;
  private readonly federated: [string, string][];
  private readonly debounceMs: number;
  private readonly pollIntervalMs: number;
  private watcher: FileWatch | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private loading: Promise<void> | undefined;
  private reloadAgain = false;
  /** Fingerprint of the bytes last tried, so an unchanged (good or bad) set is not re-parsed or re-reported. */
  private lastFingerprint: string | undefined;
  private started = false;
  private closed = false;
  /** The files were read but do not make an identity: waiting will not help until they change. */
  private rejected: SidecarError | undefined;

  constructor(opts: FilesX509SourceOptions) {
    super(opts.logger);
    for (const k of ['cert', 'key', 'bundle'] as const) {
      if (typeof opts[k] !== 'string' || opts[k].length === 0) {
        throw new SidecarError('files_source_invalid', `files identity source: "${k}" path is required`);
      }
    }
    // Validate trust domain names up front: a typo is a configuration error, not a runtime one.
    this.federated = Object.entries(opts.federated ?? {}).map(([td, file]) => [parseTrustDomain(td).name, file]);
    this.opts = opts;
    this.debounceMs = opts.debounceMs ?? 100;
    this.pollIntervalMs = opts.pollIntervalMs ?? 5000;
  }

  /** Loads the files once and starts watching. Never throws for bad files: see health()/waitReady(). */
  async start(): Promise<this> {
    if (this.closed) throw new SidecarError('source_closed', 'files identity source is closed');
    if (this.started) return this;
    this.started = true;
    this.startWatching();
    await this.reload();
    return this;
  }

  /**
   * Start-up check: resolves with the first identity. Rejects (reason `identity_files_invalid`)
   * at once when the files are there but do not make an identity (not SPIFFE, key not the
   * certificate's, a leaf as the bundle) or a file's folder does not exist, and after
   * `timeoutMs` when a file stays unreadable (it may still be being written). Closes the
   * source when it rejects.
   */
  async requireIdentity(timeoutMs: number): Promise<IdentityState> {
    try {
      return await this.waitForIdentity(timeoutMs);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async waitForIdentity(timeoutMs: number): Promise<IdentityState> {
    await this.start();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = this.current();
      if (state) return state;
      if (this.closed) throw new SidecarError('source_closed', 'files identity source is closed');
      if (this.rejected) throw new SidecarError('identity_files_invalid', `files identity refused: ${this.rejected.message}`, { cause: this.rejected });
      const missingDir = this.allFiles().map((f) => path.dirname(f)).find((d) => !existsSync(d));
      if (missingDir) throw new SidecarError('identity_files_invalid', `files identity refused: folder ${missingDir} does not exist (wrong path?)`);
      if (Date.now() >= deadline) {
        throw new SidecarError('identity_files_invalid', `files identity refused: no identity within ${timeoutMs} ms: ${this.lastError ?? 'files not loaded'}`);
      }
      // Start-up only: a short poll until the watch or the fallback poll has read the files.
      await sleep(100);
      if (!this.loading) void this.reload();
    }
  }

  /** Re-reads the files now (SIGHUP); an unchanged set is not parsed again, a bad one keeps the current identity. */
  reloadFiles(): Promise<void> {
    return this.closed ? Promise.resolve() : this.reload();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    await this.loading;
    this.clearListeners();
  }

  private allFiles(): string[] {
    return [this.opts.cert, this.opts.key, this.opts.bundle, ...this.federated.map(([, f]) => f)];
  }

  private startWatching(): void {
    try {
      // Directory watches that react only to these files' names (and Kubernetes' ..data swaps).
      this.watcher = watchFiles(this.allFiles(), () => void this.reload(), {
        debounceMs: this.debounceMs,
        persistent: false,
        onError: (err) => this.logger?.warn({ err: errorMessage(err) }, 'files identity source: directory watch failed; polling only'),
      });
    } catch (err) {
      this.logger?.warn({ err: errorMessage(err) }, 'files identity source: cannot watch directories; polling only');
    }
    this.pollTimer = setInterval(() => void this.reload(), this.pollIntervalMs);
    this.pollTimer.unref();
  }

  /** Serialised: a reload requested while one runs is done once more afterwards. */
  private reload(): Promise<void> {
    if (this.loading) {
      this.reloadAgain = true;
      return this.loading;
    }
    this.loading = (async () => {
      try {
        do {
          this.reloadAgain = false;
          await this.loadOnce();
        } while (this.reloadAgain && !this.closed);
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private async readSet(): Promise<FileSet> {
    const read = async (f: string): Promise<Buffer> => {
      try {
        return await readFile(f);
      } catch (err) {
        throw new SidecarError('files_source_read_failed', `cannot read ${f}: ${errorMessage(err)}`, { cause: err });
      }
    };
    const [cert, key, bundle, ...fed] = await Promise.all(this.allFiles().map(read));
    return { cert: cert!, key: key!, bundle: bundle!, federated: this.federated.map(([td], i) => [td, fed[i]!]) };
  }

  private async loadOnce(): Promise<void> {
    if (this.closed) return;
    let set: FileSet;
    try {
      set = await this.readSet();
    } catch (err) {
      // Re-parse the next readable set even if it is the last one: that clears the error.
      this.lastFingerprint = undefined;
      this.report(err, 'read');
      return;
    }
    const h = createHash('sha256');
    for (const b of [set.cert, set.key, set.bundle, ...set.federated.map(([, b]) => b)]) {
      h.update(String(b.length)).update(':').update(b);
    }
    const fingerprint = h.digest('hex');
    if (fingerprint === this.lastFingerprint) return;
    this.lastFingerprint = fingerprint;
    try {
      const svid = inFile(`${this.opts.cert} with key ${this.opts.key}`, () => parseX509Svid(set.cert, set.key));
      const td = svid.id.trustDomain;
      const own = bundleFromFile(td, this.opts.bundle, set.bundle);
      if (own.authorities.length === 0) throw new SidecarError('x509_bundle_invalid', `bundle file ${this.opts.bundle} holds no certificates`);
      const bundles = [own];
      for (const [i, [tdName, pem]] of set.federated.entries()) {
        const fedTd = parseTrustDomain(tdName);
        if (fedTd.equals(td)) throw new SidecarError('files_source_invalid', `federated bundle for the own trust domain ${td.name}`);
        bundles.push(bundleFromFile(fedTd, this.federated[i]![1], pem));
      }
      this.rejected = undefined;
      this.connected = true;
      this.publish({ svid, bundles: new BundleSet(bundles) });
    } catch (err) {
      this.rejected = err instanceof SidecarError ? err : new SidecarError('files_source_invalid', errorMessage(err), { cause: err });
      this.report(err, 'parse');
    }
  }

  private report(err: unknown, stage: string): void {
    if (this.closed) return;
    const repeated = this.lastError === errorMessage(err);
    // Files that do not make an identity, or are missing, need an operator: readiness says so.
    this.fail(err, true);
    this.connected = false;
    const reason = err instanceof SidecarError ? err.reason : 'files_source_error';
    // A persistent problem (e.g. a missing file) is seen on every poll: warn once, then debug.
    (repeated ? this.logger?.debug : this.logger?.warn)?.call(
      this.logger,
      { reason, err: errorMessage(err), stage },
      this.current() ? 'files identity source: new files rejected; keeping the previous identity' : 'files identity source: cannot load identity',
    );
  }
}

/** Prefixes a parse error with the file(s) it came from, keeping its reason. */
function inFile<T>(file: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const reason = err instanceof SidecarError ? err.reason : 'files_source_invalid';
    throw new SidecarError(reason, `${file}: ${errorMessage(err)}`, { cause: err });
  }
}

/** A trust bundle file: CA certificates only (a leaf here would make every peer check fail). */
function bundleFromFile(td: TrustDomain, file: string, pem: Buffer): X509Bundle {
  const bundle = inFile(`bundle file ${file}`, () => X509Bundle.fromPem(td, pem));
  const leaf = bundle.authorities.find((c) => !certificateFacts(c).isCa);
  if (leaf) {
    throw new SidecarError('x509_bundle_invalid', `bundle file ${file} holds a certificate that is not a CA (a leaf?): ${leaf.subject.replace(/\n/g, ', ') || '(no subject)'}`);
  }
  return bundle;
}
