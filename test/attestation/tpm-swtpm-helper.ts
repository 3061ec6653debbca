/**
 * Test helper: a real swtpm (TCP) per test file, tpm2-tools invocations against it, and the
 * tpm2-tools "serialized" PCR file format (a native little-endian TPML_PCR_SELECTION
 * struct, then a u32 count of TPML_DIGEST structs of 8 fixed-size TPM2B_DIGEST slots each).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { freePort } from '../helpers/ports.js';

const TOOLS = ['swtpm', 'tpm2_quote', 'tpm2_checkquote', 'tpm2_createak', 'tpm2_createek', 'tpm2_readpublic', 'tpm2_pcrextend', 'tpm2_flushcontext'];

/** A skip reason when swtpm/tpm2-tools are missing, false when they are there; throws when CI=true. */
export function swtpmSkipReason(): string | false {
  return skipFor(toolsMissing(TOOLS, 'swtpm swtpm-tools tpm2-tools'));
}

export interface Swtpm {
  readonly port: number;
  readonly dir: string;
  /** TPM2TOOLS_TCTI value for this simulator */
  readonly tcti: string;
  stop(): Promise<void>;
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Two consecutive free ports: tcti-swtpm always uses port+1 as the control channel. */
async function portPair(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await freePort();
    if (p < 65535 && !(await canConnect(p + 1))) {
      const free = await new Promise<boolean>((resolve) => {
        const s = net.createServer();
        s.once('error', () => resolve(false));
        s.listen(p + 1, '127.0.0.1', () => s.close(() => resolve(true)));
      });
      if (free) return p;
    }
  }
  throw new Error('no free port pair for swtpm');
}

export async function startSwtpm(): Promise<Swtpm> {
  const dir = mkdtempSync(path.join(tmpdir(), 'swtpm-'));
  const port = await portPair();
  const child: ChildProcess = spawn(
    'swtpm',
    ['socket', '--tpm2', '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      '--tpmstate', `dir=${dir}`, '--flags', 'not-need-init,startup-clear'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Never outlive the test process, even when it dies before its teardown runs.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.unref();
  (child.stderr as unknown as { unref(): void }).unref();
  const stop = async () => {
    process.off('exit', killOnExit);
    child.ref(); // keep the loop alive until it is gone
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    // The control port answers once swtpm is up; probing the data port would take its one client slot.
    if (await canConnect(port + 1)) return { port, dir, tcti: `swtpm:host=127.0.0.1,port=${port}`, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`swtpm did not start: ${stderr}`);
}

/** Runs a tpm2-tools command against the simulator; throws with its stderr on failure. */
export function tpm2(tpm: Swtpm, tool: string, args: string[]): string {
  const res = spawnSync(tool, args, { cwd: tpm.dir, env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${res.status}): ${res.stderr}`);
  // Without a resource manager, transient objects would pile up in the TPM's few slots.
  if (tool !== 'tpm2_flushcontext' && tool !== 'tpm2_checkquote') tpm2(tpm, 'tpm2_flushcontext', ['-t']);
  return res.stdout;
}

const HASH_IDS: Record<string, number> = { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c };
const SELECTION_STRUCT = 4 + 16 * 8; // TPML_PCR_SELECTION: count + 16 x {hash u16, size u8, select[4], pad}
const DIGEST_SLOT = 2 + 64; // TPM2B_DIGEST: size + buffer[sizeof(TPMU_HA)]
const DIGEST_LIST = 4 + 8 * DIGEST_SLOT;

/** Writes PCR values in tpm2-tools' serialized PCR file format (one bank). */
export function encodeToolsPcrs(alg: string, values: Record<number, string>): Buffer {
  const indices = Object.keys(values).map(Number).sort((a, b) => a - b);
  const sel = Buffer.alloc(SELECTION_STRUCT);
  sel.writeUInt32LE(1, 0);
  sel.writeUInt16LE(HASH_IDS[alg]!, 4);
  sel.writeUInt8(3, 6);
  for (const i of indices) sel[7 + (i >> 3)]! |= 1 << (i & 7);
  const lists = Math.ceil(indices.length / 8);
  const out = Buffer.alloc(SELECTION_STRUCT + 4 + lists * DIGEST_LIST);
  sel.copy(out, 0);
  out.writeUInt32LE(lists, SELECTION_STRUCT);
  indices.forEach((idx, k) => {
    const list = SELECTION_STRUCT + 4 + Math.floor(k / 8) * DIGEST_LIST;
    if (k % 8 === 0) out.writeUInt32LE(Math.min(8, indices.length - k), list);
    const slot = list + 4 + (k % 8) * DIGEST_SLOT;
    const v = Buffer.from(values[idx]!, 'hex');
    out.writeUInt16LE(v.length, slot);
    v.copy(out, slot + 2);
  });
  return out;
}

/** Reads a one-bank serialized PCR file back into {index: hex}. */
export function decodeToolsPcrs(buf: Buffer): { hashAlg: number; values: Record<number, string> } {
  const count = buf.readUInt32LE(0);
  if (count !== 1) throw new Error(`expected one PCR bank, got ${count}`);
  const hashAlg = buf.readUInt16LE(4);
  const size = buf.readUInt8(6);
  const indices: number[] = [];
  for (let b = 0; b < size; b++) for (let bit = 0; bit < 8; bit++) if (buf[7 + b]! & (1 << bit)) indices.push(b * 8 + bit);
  const values: Record<number, string> = {};
  indices.forEach((idx, k) => {
    const slot = SELECTION_STRUCT + 4 + Math.floor(k / 8) * DIGEST_LIST + 4 + (k % 8) * DIGEST_SLOT;
    values[idx] = buf.subarray(slot + 2, slot + 2 + buf.readUInt16LE(slot)).toString('hex');
  });
  return { hashAlg, values };
}
