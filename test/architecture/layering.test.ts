/**
 * The folder layering of src/, read from the import statements: no folder-level import cycle,
 * src/lib/ imports no domain folder, and the data plane (src/proxy/) does not reach into the
 * admin server's classes (it declares the metrics it needs; the admin side satisfies them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const srcRoot = path.join(repoRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The top-level unit of a file: its folder under src/, or the file itself for src/*.ts. */
function unitOf(file: string): string {
  const parts = path.relative(srcRoot, file).split(path.sep);
  return parts.length > 1 ? `${parts[0]}/` : parts[0]!;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|new URL\(\s*'(\.[^']+\.js)'|(?:^|\n)\s*import\s+'(\.[^']+)'/g;

/** Folder-level edges: unit -> unit -> the file pairs behind the edge. */
function folderEdges(): Map<string, Map<string, string[]>> {
  const edges = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(srcRoot)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? m[4]!;
      const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts');
      if (!target.startsWith(srcRoot + path.sep)) continue;
      const from = unitOf(file);
      const to = unitOf(target);
      if (from === to) continue;
      const out = edges.get(from) ?? new Map<string, string[]>();
      edges.set(from, out);
      const pairs = out.get(to) ?? [];
      out.set(to, pairs);
      pairs.push(`${path.relative(srcRoot, file)} -> ${path.relative(srcRoot, target)}`);
    }
  }
  return edges;
}

function reaches(edges: Map<string, Map<string, string[]>>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const unit = stack.pop()!;
    if (unit === to) return true;
    if (seen.has(unit)) continue;
    seen.add(unit);
    for (const next of edges.get(unit)?.keys() ?? []) stack.push(next);
  }
  return false;
}

const edges = folderEdges();

t.test('the import scan sees the tree (a broken pattern would pass vacuously)', async (t) => {
  t.ok(edges.get('proxy/')?.has('policy/'), 'proxy/ imports policy/');
  t.ok(edges.get('sidecar.ts')?.has('proxy/'), 'the composition root imports proxy/');
  t.ok(edges.get('policy/')?.has('lib/'), 'policy/ imports lib/');
});

t.test('no folder-level import cycle in src/', async (t) => {
  const onCycles: string[] = [];
  for (const [from, out] of edges) {
    for (const [to, pairs] of out) if (reaches(edges, to, from)) onCycles.push(`${from} -> ${to}: ${pairs.join(', ')}`);
  }
  t.same(onCycles, [], 'folder edges that lie on a cycle');
});

t.test('src/lib/ imports no domain folder', async (t) => {
  const allowed = new Set(['errors.ts', 'reasons.ts']);
  const outside = [...(edges.get('lib/') ?? new Map<string, string[]>())].filter(([to]) => !allowed.has(to)).flatMap(([, pairs]) => pairs);
  t.same(outside, []);
});

t.test('the data plane declares the metrics it needs instead of importing the admin classes', async (t) => {
  t.same(edges.get('proxy/')?.get('admin/') ?? [], []);
});
