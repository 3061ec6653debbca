/**
 * configfs-tsm attester against a fake "kernel" on a real temporary directory: the fake wraps
 * node:fs/promises and, like configfs, populates an entry on mkdir, bumps `generation` on
 * writes and serves `outblob` / `auxblob`. Races and errors are injected on real files.
 */
import * as fsp from 'node:fs/promises';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { buildSnpCertTable, SNP_CERT_GUIDS } from '../../src/attestation/sev-snp/cert-table.js';
import { verifySnpReport } from '../../src/attestation/sev-snp/verify.js';
import { TsmAttester, TsmError, type TsmFileOps } from '../../src/attestation/tsm/attester.js';
import { makeEndorsement, makeHierarchy, makeReport } from '../helpers/snp-synthetic.js';

class FakeKernel implements TsmFileOps {
  provider = 'sev_guest';
  /** Builds the outblob from the inblob just written (a real TSM signs a report over it). */
  makeOutblob: (inblob: Buffer) => Buffer = (inblob) => Buffer.concat([Buffer.from('REPORT:'), inblob]);
  auxblob: Buffer | undefined = Buffer.from('aux');
  /** Called before each outblob read, e.g. to simulate another writer. */
  beforeOutblobRead: ((entry: string) => Promise<void>) | undefined;
  busy = false;
  mkdirs = 0;
  inblobs: Buffer[] = [];
  privlevels: string[] = [];

  async mkdir(p: string) {
    await fsp.mkdir(p);
    this.mkdirs++;
    await fsp.writeFile(path.join(p, 'provider'), `${this.provider}\n`);
    await fsp.writeFile(path.join(p, 'generation'), '0\n');
    await fsp.writeFile(path.join(p, 'privlevel_floor'), '0\n');
    await fsp.writeFile(path.join(p, 'outblob'), '');
    if (this.auxblob) await fsp.writeFile(path.join(p, 'auxblob'), '');
  }
  async writeFile(p: string, data: Uint8Array | string) {
    await fsp.writeFile(p, data);
    const entry = path.dirname(p);
    if (path.basename(p) === 'privlevel') this.privlevels.push(String(data));
    if (path.basename(p) === 'inblob') {
      const inblob = await fsp.readFile(p);
      this.inblobs.push(inblob);
      await fsp.writeFile(path.join(entry, 'outblob'), this.makeOutblob(inblob));
      if (this.auxblob) await fsp.writeFile(path.join(entry, 'auxblob'), this.auxblob);
    }
    await this.bump(entry);
  }
  async bump(entry: string) {
    const g = Number((await fsp.readFile(path.join(entry, 'generation'), 'utf8')).trim());
    await fsp.writeFile(path.join(entry, 'generation'), `${g + 1}\n`);
  }
  async readFile(p: string) {
    if (path.basename(p) === 'outblob') {
      if (this.busy) throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
      await this.beforeOutblobRead?.(path.dirname(p));
    }
    return fsp.readFile(p);
  }
  rmdir = (p: string) => fsp.rmdir(p);
  stat = (p: string) => fsp.stat(p);
  unlink = (p: string) => fsp.unlink(p);
}

const reasonOf = async (p: Promise<unknown>) => p.then(() => 'ok', (err: { reason?: string }) => err.reason ?? String(err));
const userData = Buffer.alloc(64).map((_, i) => i);

t.test('configfs-tsm attester', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'tsm-report-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const entries = () => readdirSync(base);

  t.test('writes inblob and privlevel, reads outblob, auxblob and generation, removes the entry', async (t) => {
    const kernel = new FakeKernel();
    const r = await new TsmAttester({ basePath: base, privlevel: 2, fs: kernel }).report(userData);
    t.equal(r.provider, 'sev_guest');
    t.same(kernel.inblobs, [userData]);
    t.same(kernel.privlevels, ['2']);
    t.same(r.outblob, Buffer.concat([Buffer.from('REPORT:'), userData]));
    t.same(r.auxblob, Buffer.from('aux'));
    t.equal(r.generation, 2, 'privlevel and inblob writes each bump the generation');
    t.same(entries(), [], 'entry removed');
  });

  t.test('no auxblob (tdx_guest) gives undefined', async (t) => {
    const kernel = new FakeKernel();
    kernel.provider = 'tdx_guest';
    kernel.auxblob = undefined;
    const r = await new TsmAttester({ basePath: base, fs: kernel }).report(userData);
    t.equal(r.provider, 'tdx_guest');
    t.equal(r.auxblob, undefined);
    t.equal(r.generation, 1);
  });

  t.test('a racing writer is detected through generation and the request retried', async (t) => {
    const kernel = new FakeKernel();
    let raced = 0;
    kernel.beforeOutblobRead = async (entry) => {
      if (raced++ === 0) await kernel.writeFile(path.join(entry, 'inblob'), Buffer.alloc(64, 0xee));
    };
    const r = await new TsmAttester({ basePath: base, fs: kernel }).report(userData);
    t.equal(kernel.mkdirs, 2, 'second attempt in a fresh entry');
    t.same(r.outblob.subarray(7), userData, 'the report is over our data');
    t.same(entries(), []);

    const always = new FakeKernel();
    always.beforeOutblobRead = (entry) => always.bump(entry);
    t.equal(await reasonOf(new TsmAttester({ basePath: base, fs: always, maxAttempts: 3 }).report(userData)), 'tsm_race');
    t.equal(always.mkdirs, 3);
    t.same(entries(), []);
  });

  t.test('error paths', async (t) => {
    t.equal(await reasonOf(new TsmAttester({ basePath: path.join(base, 'absent') }).report(userData)), 'tsm_unavailable');
    const cca = new FakeKernel();
    cca.provider = 'arm_cca_guest';
    const err = await new TsmAttester({ basePath: base, fs: cca }).report(userData).catch((e: unknown) => e);
    t.ok(err instanceof TsmError);
    t.equal((err as TsmError).reason, 'tsm_unsupported_provider');
    t.match((err as TsmError).message, /arm_cca_guest/);
    const busy = new FakeKernel();
    busy.busy = true;
    t.equal(await reasonOf(new TsmAttester({ basePath: base, fs: busy }).report(userData)), 'tsm_busy');
    t.equal(await reasonOf(new TsmAttester({ basePath: base, fs: new FakeKernel() }).report(userData.subarray(0, 32))), 'tsm_bad_request');
    t.throws(() => new TsmAttester({ privlevel: 4 }), /privlevel/);
    const empty = new FakeKernel();
    empty.makeOutblob = () => Buffer.alloc(0);
    t.equal(await reasonOf(new TsmAttester({ basePath: base, fs: empty }).report(userData)), 'tsm_failed');
    // A plain directory with no kernel behind it (default node:fs): the entry has no provider.
    t.equal(await reasonOf(new TsmAttester({ basePath: base }).report(userData)), 'tsm_unavailable');
    t.same(entries(), [], 'every failed attempt cleaned up');
  });

  t.test('outblob + auxblob from the attester verify as an SEV-SNP report', async (t) => {
    const milan = await makeHierarchy('Milan');
    const chipId = Buffer.alloc(64, 0x42);
    const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
    const vcek = await makeEndorsement(milan, { tcb, hwId: chipId });
    const kernel = new FakeKernel();
    kernel.makeOutblob = (inblob) => makeReport({ product: 'Milan', tcb, chipId, reportData: inblob }, vcek.privateKey);
    kernel.auxblob = Buffer.from(buildSnpCertTable([
      { guid: SNP_CERT_GUIDS.vcek, data: vcek.der },
      { guid: SNP_CERT_GUIDS.ask, data: milan.ask.der },
      { guid: SNP_CERT_GUIDS.ark, data: milan.ark.der },
    ]));
    const r = await new TsmAttester({ basePath: base, fs: kernel }).report(userData);
    const anchors = loadSnpAnchors([milan.ark.pem, milan.ask.pem]);
    const claims = verifySnpReport(r.outblob, { anchors, certTable: r.auxblob! }, new Date('2026-06-01'));
    t.equal(claims.report_data, Buffer.from(userData).toString('hex'));
    t.equal(claims.chip_id, chipId.toString('hex'));
  });
});
