/**
 * Limits that keep reading a YAML file linear in its size, whoever wrote it.
 *
 * The `yaml` package's own duplicate-key check compares each key with every earlier key of its
 * mapping, and `Alias.resolve` walks the whole document for every alias: both quadratic, so a
 * few hundred KiB could hold the event loop for seconds. The reader therefore parses with
 * `uniqueKeys: false` (duplicates are found with a Map per mapping, see YamlReader.map) and
 * resolves aliases through the anchor index built here in one pass. Files are size-capped
 * before they are read, aliases are capped per file (each alias may re-read its target, so
 * the cap bounds the work to a small multiple of the file) and nesting is capped in depth.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isAlias, isMap, isPair, isSeq, type Document, type Node } from 'yaml';

/** Config, policy and reference-value files: far above any real one (a 1,000-agent policy is ~150 KiB). */
export const MAX_YAML_FILE_BYTES = 1024 * 1024;
/** Aliases (`*name`) per file. Real files use a handful; each one may re-read what it names. */
export const MAX_YAML_ALIASES = 100;
/** Nesting depth of mappings and lists; the deepest real structure is about 6. */
export const MAX_YAML_DEPTH = 64;

export interface YamlLimits {
  /** Bytes of text (UTF-8); default MAX_YAML_FILE_BYTES. */
  maxBytes?: number;
  /** Default MAX_YAML_ALIASES; 0 refuses aliases. */
  maxAliases?: number;
}

/** The file is larger than its limit; thrown before it is read into memory. */
export class YamlFileTooLargeError extends Error {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`is ${size} bytes, over the limit of ${limit} bytes (${describeBytes(limit)})`);
  }
}

export function describeBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/**
 * Reads a text file of at most `maxBytes` (synchronously: config and policy loads). Checks the
 * size on the open handle first and reads at most one byte more, so a huge or growing file is
 * refused without being read. Throws YamlFileTooLargeError, or the fs error.
 */
export function readYamlFileText(file: string, maxBytes = MAX_YAML_FILE_BYTES): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > maxBytes) throw new YamlFileTooLargeError(size, maxBytes);
    const buf = Buffer.allocUnsafe(maxBytes + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got > maxBytes) throw new YamlFileTooLargeError(got, maxBytes);
    }
    return buf.toString('utf8', 0, got);
  } finally {
    closeSync(fd);
  }
}

/** An anchored node and where its anchor is: an alias names the last such anchor before it. */
interface Anchored {
  offset: number;
  node: Node;
}

export interface ScanProblem {
  offset: number;
  message: string;
}

export interface DocumentScan {
  anchors: Map<string, Anchored[]>;
  /** At most one problem: the first limit exceeded (the document is then not read further). */
  problem: ScanProblem | undefined;
}

/** One pass over a document (explicit stack: no recursion on hostile nesting). */
export function scanDocument(doc: Document, maxAliases: number): DocumentScan {
  const anchors = new Map<string, Anchored[]>();
  let aliases = 0;
  const stack: { node: unknown; depth: number }[] = [{ node: doc.contents, depth: 0 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (isPair(node)) {
      stack.push({ node: node.value, depth }, { node: node.key, depth });
      continue;
    }
    const n = node as Node;
    const offset = n.range?.[0] ?? 0;
    if (isAlias(n)) {
      if (++aliases > maxAliases) {
        const message =
          maxAliases === 0
            ? `aliases (*${n.source}) are not allowed in this file`
            : `more than ${maxAliases} aliases (*${n.source}); write the values out instead`;
        return { anchors, problem: { offset, message } };
      }
      continue;
    }
    if (n.anchor) {
      const list = anchors.get(n.anchor);
      if (list) list.push({ offset, node: n });
      else anchors.set(n.anchor, [{ offset, node: n }]);
    }
    if (isMap(n) || isSeq(n)) {
      if (depth >= MAX_YAML_DEPTH) {
        return { anchors, problem: { offset, message: `nested more than ${MAX_YAML_DEPTH} levels deep` } };
      }
      const items = n.items as unknown[];
      for (let i = items.length - 1; i >= 0; i--) stack.push({ node: items[i], depth: depth + 1 });
    }
  }
  for (const list of anchors.values()) list.sort((a, b) => a.offset - b.offset);
  return { anchors, problem: undefined };
}

/** The node an alias at `offset` names: the last anchor of that name before it. */
export function anchorBefore(anchors: ReadonlyMap<string, readonly Anchored[]>, name: string, offset: number): Node | undefined {
  const list = anchors.get(name);
  if (!list) return undefined;
  let lo = 0;
  let hi = list.length; // first index with offset >= `offset`
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.offset < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 ? list[lo - 1]!.node : undefined;
}
