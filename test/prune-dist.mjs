// Deletes compiled files in dist/ whose TypeScript source is gone. tsc never removes outputs, and
// tap runs every dist/test/**/*.test.js: a renamed or deleted test would otherwise keep running
// from its stale compiled copy (and a test moved to the slow suite would run in both).
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');

function prune(dir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      prune(file);
      continue;
    }
    const compiled = /^(.*)\.js(\.map)?$/.exec(entry.name);
    if (!compiled) continue;
    const source = path.join(root, path.relative(dist, dir), `${compiled[1]}.ts`);
    if (!existsSync(source)) rmSync(file);
  }
}

for (const top of ['src', 'test', 'bench', 'fuzz']) prune(path.join(dist, top));
