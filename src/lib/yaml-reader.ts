/**
 * Position-aware YAML reading for the config and policy loaders.
 *
 * Both files are security-relevant, so the readers are strict: unknown keys, wrong types
 * and YAML syntax problems are all collected as `Problem`s (file, line, column, key path)
 * and reported together instead of stopping at the first one.
 */
import {
  Alias,
  Document,
  LineCounter,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseAllDocuments,
  type Node,
  type YAMLMap,
} from 'yaml';
import { ConfigError } from '../errors.js';
import type { ReasonCode } from '../reasons.js';
import { closestMatch } from './values.js';
import { anchorBefore, describeBytes, MAX_YAML_ALIASES, MAX_YAML_FILE_BYTES, scanDocument, type YamlLimits } from './yaml-limits.js';

export interface Problem {
  file: string;
  /** 1-based; 0 when the problem is about the whole file (e.g. it cannot be read). */
  line: number;
  column: number;
  /** Key path such as `outbound.routes[0].server_id`. */
  key?: string;
  message: string;
}

/** `file:line:column: key: message` (position parts omitted when unknown). */
export function formatProblem(problem: Problem): string {
  const pos = problem.line > 0 ? `${problem.file}:${problem.line}:${problem.column}` : problem.file;
  return `${pos}: ${problem.key ? `${problem.key}: ` : ''}${problem.message}`;
}

/** A message lists at most this many problems (all of them stay in `problems`). */
export const MAX_LISTED_PROBLEMS = 50;

/** A ConfigError carrying every problem found; its message lists them one per line (at most MAX_LISTED_PROBLEMS). */
export class ProblemsError extends ConfigError {
  readonly problems: readonly Problem[];

  constructor(unsorted: readonly Problem[], reason: ReasonCode) {
    const problems = [...unsorted].sort((a, b) => a.line - b.line || a.column - b.column);
    const first = problems[0] ?? { file: '<unknown>', line: 0, column: 0, message: 'invalid' };
    super(first.message, { file: first.file, line: first.line, column: first.column, key: first.key }, reason);
    this.problems = problems;
    const shown = problems.slice(0, MAX_LISTED_PROBLEMS).map(formatProblem);
    if (problems.length > MAX_LISTED_PROBLEMS) shown.push(`... and ${problems.length - MAX_LISTED_PROBLEMS} more`);
    this.message = problems.length === 1 ? formatProblem(first) : `${problems.length} problems:\n${shown.join('\n')}`;
  }
}

/** A document with no content (`---` with nothing after it, or only comments). */
export function isEmptyDocument(doc: Document): boolean {
  return doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);
}

/** A value at a key path: a map entry or a list item. */
export interface Field {
  path: string;
  /** The value node; null for `key:` with nothing after it. */
  node: Node | null;
  /** The key node (map entries), used as the position when the value is empty. */
  keyNode?: Node;
}

export class MapView {
  constructor(
    readonly node: YAMLMap,
    readonly path: string,
    private readonly fields: ReadonlyMap<string, Field>,
    private readonly reader: YamlReader,
  ) {}

  get(key: string): Field | undefined {
    return this.fields.get(key);
  }

  has(key: string): boolean {
    return this.fields.has(key);
  }

  keys(): string[] {
    return [...this.fields.keys()];
  }

  /** The field, or a "missing required key" problem at the mapping's position. */
  require(key: string): Field | undefined {
    const f = this.fields.get(key);
    if (!f) this.reader.report(this.node, this.path || undefined, `missing required key '${key}'`);
    return f;
  }

  child(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }
}

export class YamlReader {
  readonly problems: Problem[] = [];
  /** Things worth telling the operator that do not make the file invalid. */
  readonly warnings: Problem[] = [];
  private doc: Document | undefined;
  /** Anchors of each parsed document, so an alias costs a lookup, not a walk of the document. */
  private readonly anchorsByDoc = new Map<Document, ReturnType<typeof scanDocument>['anchors']>();

  constructor(
    readonly file: string,
    private readonly lineCounter: LineCounter,
  ) {}

  /**
   * Parses every document of `text` in time linear in its length (limits: yaml-limits.ts).
   * YAML errors and warnings become problems; documents with structural errors or over a
   * limit are left out (validating them would only add noise). Duplicate keys are reported
   * by `map` as each mapping is read.
   */
  static parse(text: string, file: string, limits: YamlLimits = {}): { reader: YamlReader; documents: Document[] } {
    const lineCounter = new LineCounter();
    const reader = new YamlReader(file, lineCounter);
    const documents: Document[] = [];
    const maxBytes = limits.maxBytes ?? MAX_YAML_FILE_BYTES;
    // text.length <= bytes <= 3 * text.length (UTF-16 units to UTF-8): count only when it may matter.
    const bytes = text.length * 3 > maxBytes ? Buffer.byteLength(text, 'utf8') : text.length;
    if (bytes > maxBytes) {
      reader.problems.push({ file, line: 0, column: 0, message: `is ${bytes} bytes, over the limit of ${maxBytes} bytes (${describeBytes(maxBytes)})` });
      return { reader, documents };
    }
    const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
    for (const doc of parsed) {
      for (const e of [...doc.errors, ...doc.warnings]) {
        reader.reportAt(e.pos[0], undefined, e.message.split('\n')[0]!);
      }
      if (doc.errors.length > 0) continue;
      const scan = scanDocument(doc, limits.maxAliases ?? MAX_YAML_ALIASES);
      if (scan.problem) {
        reader.reportAt(scan.problem.offset, undefined, scan.problem.message);
        continue;
      }
      reader.anchorsByDoc.set(doc, scan.anchors);
      documents.push(doc);
    }
    return { reader, documents };
  }

  /** Makes aliases in `doc` resolvable. */
  useDocument(doc: Document): void {
    this.doc = doc;
  }

  get ok(): boolean {
    return this.problems.length === 0;
  }

  /** 1-based line and column of a node's start. */
  position(node: Node | null | undefined): { line: number; col: number } {
    return this.lineCounter.linePos(node?.range?.[0] ?? 0);
  }

  reportAt(offset: number, key: string | undefined, message: string): void {
    const { line, col } = this.lineCounter.linePos(offset);
    this.problems.push({ file: this.file, line, column: col, ...(key ? { key } : {}), message });
  }

  report(node: Node | null | undefined, key: string | undefined, message: string): void {
    this.reportAt(node?.range?.[0] ?? 0, key, message);
  }

  warn(node: Node | null | undefined, key: string | undefined, message: string): void {
    const { line, col } = this.position(node);
    this.warnings.push({ file: this.file, line, column: col, ...(key ? { key } : {}), message });
  }

  /** Reports at the value, or at the key when the value is empty. */
  reportField(field: Field, message: string): void {
    const n = field.node;
    const empty = !n || !n.range || n.range[0] === n.range[1];
    this.report(empty ? (field.keyNode ?? n) : n, field.path, message);
  }

  /** Follows aliases. `undefined`: an unknown alias, already reported. */
  resolve(field: Field): Node | null | undefined {
    let node = field.node;
    for (let depth = 0; node && isAlias(node); depth++) {
      const anchors = this.doc && depth < 10 ? this.anchorsByDoc.get(this.doc) : undefined;
      const target = anchors ? anchorBefore(anchors, (node as Alias).source, node.range?.[0] ?? 0) : undefined;
      if (!target) {
        this.reportField(field, `unknown alias '*${(node as Alias).source}'`);
        return undefined;
      }
      node = target as Node;
    }
    return node;
  }

  /** Reads a mapping; non-string and (when `allowed` is given) unknown keys are problems. */
  map(field: Field, allowed: readonly string[] | null, hint?: (key: string) => string | undefined): MapView | undefined {
    const node = this.resolve(field);
    if (!isMap(node)) {
      if (node !== undefined) this.reportField(field, `must be a mapping${describe(node)}`);
      return undefined;
    }
    const fields = new Map<string, Field>();
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      const key = isScalar(keyNode) ? keyNode.value : undefined;
      const keyText = typeof key === 'string' ? key : typeof key === 'number' ? String(key) : undefined;
      if (keyText === undefined || (typeof key === 'number' && allowed !== null)) {
        this.report(keyNode, field.path || undefined, 'keys must be plain strings');
        continue;
      }
      const path = field.path ? `${field.path}.${keyText}` : keyText;
      if (allowed !== null && !allowed.includes(keyText)) {
        const extra = hint?.(keyText);
        const near = closestMatch(keyText, allowed);
        this.report(
          keyNode,
          path,
          `unknown key '${keyText}'${extra ? ` (${extra})` : near ? ` (did you mean '${near}'?)` : ''}`,
        );
        continue;
      }
      const earlier = fields.get(keyText);
      if (earlier) {
        const { line } = this.position(earlier.keyNode);
        this.report(keyNode, path, `Map keys must be unique: '${keyText}' is already set on line ${line}`);
        continue;
      }
      fields.set(keyText, { path, node: pair.value as Node | null, keyNode: keyNode ?? undefined });
    }
    return new MapView(node, field.path, fields, this);
  }

  /** Items of a sequence as fields `path[i]`. */
  list(field: Field): Field[] | undefined {
    const node = this.resolve(field);
    if (!isSeq(node)) {
      if (node !== undefined) this.reportField(field, `must be a list${describe(node)}`);
      return undefined;
    }
    return node.items.map((item, i) => ({ path: `${field.path}[${i}]`, node: item as Node | null }));
  }

  /** The JS value of a scalar field, or undefined (with a problem) for collections. */
  scalar(field: Field): { value: unknown; node: Node } | undefined {
    const node = this.resolve(field);
    if (node === undefined) return undefined;
    if (node === null) {
      this.reportField(field, 'needs a value');
      return undefined;
    }
    if (!isScalar(node)) {
      this.reportField(field, `must be a single value${describe(node)}`);
      return undefined;
    }
    if (node.value === null) {
      this.reportField(field, 'needs a value');
      return undefined;
    }
    return { value: node.value, node };
  }

  string(field: Field, opts: { allowEmpty?: boolean } = {}): string | undefined {
    const scalar = this.scalar(field);
    if (!scalar) return undefined;
    if (typeof scalar.value !== 'string') {
      this.reportField(field, `must be a string, got ${typeof scalar.value === 'number' ? 'a number' : typeof scalar.value}`);
      return undefined;
    }
    if (!opts.allowEmpty && scalar.value.trim().length === 0) {
      this.reportField(field, 'must not be empty');
      return undefined;
    }
    return scalar.value;
  }

  /**
   * A hex string. Plain scalars YAML read as numbers (e.g. an all-digit digest) are taken
   * from their source text, so no leading zeros or digits are lost. Result: lower-case.
   */
  hex(field: Field, what = 'hex string'): string | undefined {
    const scalar = this.scalar(field);
    if (!scalar) return undefined;
    let text: string | undefined;
    if (typeof scalar.value === 'string') text = scalar.value;
    else if (typeof scalar.value === 'number' && isScalar(scalar.node) && typeof scalar.node.source === 'string') text = scalar.node.source;
    if (text === undefined || !/^[0-9a-fA-F]+$/.test(text)) {
      const shown = text ?? String(scalar.value);
      this.reportField(
        field,
        `must be a ${what}, got '${shown.length > 40 ? `${shown.slice(0, 40)}...` : shown}'${
          text?.endsWith('...') ? ' (a placeholder? paste the full value)' : ''
        }`,
      );
      return undefined;
    }
    if (text.length % 2 !== 0) {
      this.reportField(field, `must be a ${what} with an even number of digits (whole bytes), got ${text.length}`);
      return undefined;
    }
    return text.toLowerCase();
  }

  int(field: Field, opts: { min?: number; max?: number } = {}): number | undefined {
    const scalar = this.scalar(field);
    if (!scalar) return undefined;
    if (typeof scalar.value !== 'number' || !Number.isSafeInteger(scalar.value)) {
      this.reportField(field, `must be an integer, got ${show(scalar.value)}`);
      return undefined;
    }
    return this.checkRange(field, scalar.value, opts);
  }

  number(field: Field, opts: { min?: number; max?: number } = {}): number | undefined {
    const scalar = this.scalar(field);
    if (!scalar) return undefined;
    if (typeof scalar.value !== 'number' || !Number.isFinite(scalar.value)) {
      this.reportField(field, `must be a number, got ${show(scalar.value)}`);
      return undefined;
    }
    return this.checkRange(field, scalar.value, opts);
  }

  private checkRange(field: Field, n: number, opts: { min?: number; max?: number }): number | undefined {
    if (opts.min !== undefined && n < opts.min) {
      this.reportField(field, `must be at least ${opts.min}, got ${n}`);
      return undefined;
    }
    if (opts.max !== undefined && n > opts.max) {
      this.reportField(field, `must be at most ${opts.max}, got ${n}`);
      return undefined;
    }
    return n;
  }

  bool(field: Field): boolean | undefined {
    const scalar = this.scalar(field);
    if (!scalar) return undefined;
    if (typeof scalar.value !== 'boolean') {
      this.reportField(field, `must be true or false, got ${show(scalar.value)}`);
      return undefined;
    }
    return scalar.value;
  }

  /** One of `choices` (exact, case-sensitive), with a "did you mean" hint. */
  oneOf<T extends string>(field: Field, choices: readonly T[]): T | undefined {
    const v = this.string(field);
    if (v === undefined) return undefined;
    if ((choices as readonly string[]).includes(v)) return v as T;
    const near = closestMatch(v, choices);
    this.reportField(
      field,
      `must be one of ${choices.join(', ')}; got '${v}'${near ? ` (did you mean '${near}'?)` : ''}`,
    );
    return undefined;
  }

  /** A list of non-empty strings; `single: true` also accepts one bare string. */
  stringList(field: Field, opts: { single?: boolean } = {}): string[] | undefined {
    const node = this.resolve(field);
    if (opts.single && isScalar(node) && typeof node.value === 'string') {
      const text = this.string(field);
      return text === undefined ? undefined : [text];
    }
    const items = this.list(field);
    if (!items) return undefined;
    const out: string[] = [];
    let ok = true;
    for (const item of items) {
      const text = this.string(item);
      if (text === undefined) ok = false;
      else out.push(text);
    }
    return ok ? out : undefined;
  }
}

function describe(node: Node | null): string {
  if (node === null) return ', got nothing';
  if (isMap(node)) return ', got a mapping';
  if (isSeq(node)) return ', got a list';
  if (isScalar(node)) return `, got ${show(node.value)}`;
  return '';
}

function show(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  return String(v);
}
