/**
 * `npm run docs:reasons`: writes docs/reasons.md and the README's denial table (between the
 * `<!-- reasons:begin -->` and `<!-- reasons:end -->` markers) from the catalogue. With
 * `--check` it writes nothing and exits 1 when either file differs from what it would write.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readmeDenialTable, reasonsMarkdown, replaceRegion } from './reasons-doc.js';

/** The repository root: this file runs from dist/src/. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const check = process.argv.includes('--check');

const targets = [
  { file: path.join(root, 'docs/reasons.md'), want: () => reasonsMarkdown() },
  { file: path.join(root, 'README.md'), want: (current: string) => replaceRegion(current, readmeDenialTable()) },
];

let stale = 0;
for (const t of targets) {
  let current = '';
  try {
    current = readFileSync(t.file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const want = t.want(current);
  if (want === current) continue;
  stale++;
  if (check) console.error(`${path.relative(root, t.file)} differs from the catalogue: run npm run docs:reasons`);
  else {
    writeFileSync(t.file, want);
    console.log(`wrote ${path.relative(root, t.file)}`);
  }
}
if (check && stale > 0) process.exitCode = 1;
