/**
 * `attest-sidecar inject` over multi-document YAML text: each document is injected on its own;
 * documents that are not changed are printed as they were read (comments kept), changed ones are
 * re-serialized (their comments are lost: the `yaml` package cannot carry comments through a
 * rebuilt object). Pure: text in, text out or an InjectionRefusal naming the source and document.
 */
import { parseAllDocuments, stringify } from 'yaml';
import { describeBytes, scanDocument } from '../lib/yaml-limits.js';
import { InjectionRefusal } from './annotations.js';
import { injectObject, type InjectOptions, type SkipReason } from './inject.js';

/** Larger than any real manifest bundle; bounds memory and the YAML parser's work. */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
const MAX_ALIASES = 100;

export interface DocumentReport {
  /** 1-based index of the document in its source. */
  index: number;
  kind: string;
  name: string;
  outcome: 'injected' | SkipReason;
}

export interface ManifestResult {
  /** The documents, `---`-separated, ending with a newline (empty when there were none). */
  text: string;
  documents: DocumentReport[];
}

/** Serialization of changed documents: block style, no line folding (long values stay on one line). */
const STRINGIFY_OPTIONS = { lineWidth: 0, minContentWidth: 0 } as const;

function refuse(source: string, index: number | undefined, message: string, reason: InjectionRefusal['reason'] = 'injection_manifest_invalid'): InjectionRefusal {
  return new InjectionRefusal(reason, `${source}${index === undefined ? '' : ` document ${index}`}: ${message}`);
}

function describe(value: unknown): { kind: string; name: string } {
  const o = (value ?? {}) as { kind?: unknown; metadata?: { name?: unknown } };
  return {
    kind: typeof o.kind === 'string' ? o.kind.slice(0, 64) : '(no kind)',
    name: typeof o.metadata?.name === 'string' ? o.metadata.name.slice(0, 253) : '(unnamed)',
  };
}


/** Injects every document of `text`; `source` names it in refusals (a file name or "stdin"). */
export function injectManifests(text: string, source: string, options: InjectOptions): ManifestResult {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_MANIFEST_BYTES) throw refuse(source, undefined, `is ${bytes} bytes, over the limit of ${describeBytes(MAX_MANIFEST_BYTES)}`);
  const parts: string[] = [];
  const documents: DocumentReport[] = [];
  const parsed = parseAllDocuments(text, { prettyErrors: false });
  if (!Array.isArray(parsed)) return { text: '', documents }; // an empty stream
  parsed.forEach((doc, i) => {
    const index = i + 1;
    const problem = doc.errors[0] ?? scanDocument(doc, MAX_ALIASES).problem;
    if (problem) throw refuse(source, index, `not valid YAML: ${problem.message.split('\n')[0]}`);
    const value: unknown = doc.toJS({ maxAliasCount: MAX_ALIASES });
    if (value === null || value === undefined) return; // an empty document (a trailing `---`, comments only)
    let result;
    try {
      result = injectObject(value, options);
    } catch (err) {
      if (err instanceof InjectionRefusal) throw refuse(source, index, err.message, err.reason);
      throw err;
    }
    documents.push({ index, ...describe(value), outcome: result.outcome === 'injected' ? 'injected' : result.why });
    if (result.outcome === 'injected') {
      parts.push(stringify(result.object, STRINGIFY_OPTIONS));
    } else {
      // The separators are written between the parts: drop the document's own `---` / `...` markers.
      if (doc.directives) {
        doc.directives.docStart = null;
        doc.directives.docEnd = false;
      }
      parts.push(doc.toString(STRINGIFY_OPTIONS));
    }
  });
  return { text: parts.join('---\n'), documents };
}
