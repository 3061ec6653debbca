/**
 * Opening a ledger directory: read the snapshot, delete what an interrupted compaction left
 * behind, replay the current journal on top and cut off a torn last record.
 *
 * Crash safety of compaction rests on one rule: the snapshot names the journal generation that
 * applies on top of it. Journals of older generations are already folded into the snapshot;
 * a newer journal can only be the empty file of a compaction whose snapshot never landed.
 */
import { constants } from 'node:fs';
import { open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SidecarError } from '../errors.js';
import { syncDir, writeFileAtomic } from '../lib/fs-atomic.js';
import { applyDelta, encodeSnapshot, parseSnapshot, replayJournal, type LedgerSnapshot } from './journal.js';
import type { Logger } from '../lib/log.js';

export const SNAPSHOT_FILE = 'ledger.snapshot';
const JOURNAL_NAME = /^ledger\.(\d{1,15})\.journal$/;
/** Temp files of writeFileAtomic(ledger.snapshot) that a crash left behind. */
const SNAPSHOT_TEMP = /^\.ledger\.snapshot\..*\.tmp$/;

export function journalPath(dir: string, generation: number): string {
  return path.join(dir, `ledger.${generation}.journal`);
}

export interface RecoveredLedger {
  generation: number;
  totals: Map<string, number>;
  /** The current journal, open for appending (O_APPEND). */
  journal: FileHandle;
  /** Records in the current journal (drives compaction). */
  journalRecords: number;
  /** Bytes of a torn last record that were cut off (0 when the journal ended cleanly). */
  repairedBytes: number;
}

/** Caller holds the directory lock. Throws SidecarError('budget_ledger_corrupt') on damage. */
export async function recoverLedger(dir: string, logger?: Logger): Promise<RecoveredLedger> {
  const names = await readdir(dir);
  const journals = names.flatMap((n) => {
    const m = JOURNAL_NAME.exec(n);
    return m ? [Number(m[1])] : [];
  });
  const snapshotFile = path.join(dir, SNAPSHOT_FILE);
  let snapshot: LedgerSnapshot;
  const text = await readIfExists(snapshotFile);
  if (text === undefined) {
    if (journals.length > 0) {
      throw new SidecarError('budget_ledger_corrupt', `${dir} holds budget journals but no ${SNAPSHOT_FILE}; refusing to open the ledger`);
    }
    snapshot = { generation: 0, totals: new Map() };
    await writeFileAtomic(snapshotFile, encodeSnapshot(0, []));
  } else {
    snapshot = parseSnapshot(text, snapshotFile);
  }

  for (const gen of journals) {
    if (gen === snapshot.generation) continue;
    const file = journalPath(dir, gen);
    if (gen > snapshot.generation && (await readFile(file)).length > 0) {
      throw new SidecarError(
        'budget_ledger_corrupt',
        `${file} is newer than ${SNAPSHOT_FILE} (generation ${snapshot.generation}) and not empty; refusing to open the ledger`,
      );
    }
    await unlink(file);
    logger?.info({ file }, 'removed a budget journal left by an interrupted compaction');
  }
  for (const n of names) if (SNAPSHOT_TEMP.test(n)) await unlink(path.join(dir, n)).catch(() => undefined);

  const file = journalPath(dir, snapshot.generation);
  const journal = await open(
    file,
    constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    if (!(await journal.stat()).isFile()) throw new SidecarError('budget_ledger_corrupt', `${file} is not a regular file`);
    const replay = replayJournal(await journal.readFile(), file);
    const totals = snapshot.totals;
    for (const rec of replay.records) applyDelta(totals, rec.k, rec.d);
    if (replay.tornBytes > 0) {
      await journal.truncate(replay.goodBytes);
      await journal.sync();
      logger?.warn(
        { file, line: replay.tornLine, bytes: replay.tornBytes },
        'dropped a torn last budget journal record (a crash interrupted its write; it was never acknowledged)',
      );
    }
    await syncDir(dir); // the journal may have just been created
    return {
      generation: snapshot.generation,
      totals,
      journal,
      journalRecords: replay.records.length,
      repairedBytes: replay.tornBytes,
    };
  } catch (err) {
    await journal.close().catch(() => undefined);
    throw err;
  }
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
