/**
 * Policy YAML -> CompiledPolicy. Accepted shapes (may be combined):
 *   - one or more documents (`---`) each with `agent_policy:`
 *   - `agents:` a list of agent mappings
 *   - optional `admins:` (SPIFFE IDs allowed on the admin API) and `version: 1`
 * Every problem in the file is reported, each with file:line:column and key path.
 */
import { createHash } from 'node:crypto';
import { isMap, type Node } from 'yaml';
import { errorMessage } from '../errors.js';
import { checkWorkloadSpiffeId } from '../spiffe/id-check.js';
import { isEmptyDocument, ProblemsError, YamlReader, type Problem } from '../lib/yaml-reader.js';
import { readYamlFileText, YamlFileTooLargeError } from '../lib/yaml-limits.js';
import { readAgent, type PolicyAgent, type ReadAgent } from './read-agent.js';
import type { CompiledPolicy } from './types.js';

/** The policy file is invalid; `problems` lists every problem found. Reason `policy_invalid`. */
export class PolicyError extends ProblemsError {
  constructor(problems: readonly Problem[]) {
    super(problems, 'policy_invalid');
  }
}

/** CompiledPolicy whose agents also carry their budget. */
export interface Policy extends CompiledPolicy {
  readonly agents: readonly PolicyAgent[];
  readonly agentsBySpiffeId: ReadonlyMap<string, PolicyAgent>;
}

const TOP_KEYS = ['agent_policy', 'agents', 'admins', 'version'] as const;
const SUPPORTED_VERSION = 1;

/** `version` of a policy: first 16 hex digits of the sha256 of its text. */
export function policyVersion(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function compilePolicy(text: string, file: string, now: Date = new Date()): Policy {
  const { reader, documents } = YamlReader.parse(text, file);
  const read: ReadAgent[] = [];
  const admins = new Set<string>();

  for (const doc of documents) {
    if (isEmptyDocument(doc)) continue; // e.g. a trailing `---`
    reader.useDocument(doc);
    const m = reader.map({ path: '', node: doc.contents as Node }, TOP_KEYS);
    if (!m) continue;

    const single = m.get('agent_policy');
    if (single) {
      const a = readAgent(reader, single);
      if (a) read.push(a);
    }
    const list = m.get('agents');
    if (list) {
      for (const item of reader.list(list) ?? []) {
        const a = readAgent(reader, item);
        if (a) read.push(a);
      }
    }
    const adminsField = m.get('admins');
    if (adminsField) {
      for (const item of reader.list(adminsField) ?? []) {
        const text = reader.string(item);
        if (text === undefined) continue;
        const id = checkWorkloadSpiffeId(text);
        if (!id.ok) reader.reportField(item, id.error);
        else if (admins.has(id.value)) reader.reportField(item, `duplicate admin '${id.value}'`);
        else admins.add(id.value);
      }
    }
    const versionField = m.get('version');
    if (versionField) {
      const v = reader.scalar(versionField);
      if (v && String(v.value) !== String(SUPPORTED_VERSION)) {
        reader.reportField(versionField, `unsupported policy version ${String(v.value)} (this sidecar reads version ${SUPPORTED_VERSION})`);
      }
    }
    if (isMap(doc.contents) && doc.contents.items.length === 0) {
      reader.report(doc.contents as Node, undefined, "expected 'agent_policy:' or 'agents:'");
    }
  }

  const bySpiffeId = new Map<string, PolicyAgent>();
  checkUnique(reader, read, bySpiffeId);

  if (reader.ok && read.length === 0) {
    reader.problems.push({
      file,
      line: 0,
      column: 0,
      message: "defines no agents (add 'agent_policy:' or 'agents:'; an empty policy would deny every request)",
    });
  }
  if (!reader.ok) throw new PolicyError(reader.problems);

  const agents = read.map((r) => r.agent);
  return Object.freeze({
    version: policyVersion(text),
    file,
    agentsBySpiffeId: bySpiffeId,
    agents: Object.freeze(agents),
    admins,
    loadedAt: now,
  });
}

/** Names are unique; each SPIFFE ID is bound to exactly one agent. Fills `bySpiffeId`. */
function checkUnique(reader: YamlReader, read: readonly ReadAgent[], bySpiffeId: Map<string, PolicyAgent>): void {
  const names = new Map<string, ReadAgent>();
  const idOwner = new Map<string, { agent: PolicyAgent; line: number }>();
  for (const r of read) {
    const { name } = r.agent;
    const first = names.get(name);
    if (first) {
      reader.reportField(r.nameField, `duplicate agent name '${name}' (first declared at line ${first.agent.position?.line})`);
    } else {
      names.set(name, r);
    }
    for (const { id, field } of r.idNodes) {
      const owner = idOwner.get(id);
      if (owner) {
        const whose = owner.agent === r.agent ? 'this agent' : `agent '${owner.agent.name}'`;
        reader.reportField(field, `SPIFFE ID '${id}' is already bound to ${whose} (line ${owner.line}); an ID may belong to one agent only`);
        continue;
      }
      idOwner.set(id, { agent: r.agent, line: reader.position(field.node).line });
      bySpiffeId.set(id, r.agent);
    }
  }
}

/** Reads and compiles a policy file; unreadable files are a PolicyError too. */
export function loadPolicyFile(path: string, now?: Date): Policy {
  let text: string;
  try {
    text = readYamlFileText(path);
  } catch (err) {
    const message = err instanceof YamlFileTooLargeError ? err.message : `cannot read policy file: ${errorMessage(err)}`;
    throw new PolicyError([{ file: path, line: 0, column: 0, message }]);
  }
  return compilePolicy(text, path, now);
}

/** The policy reload's parse job (run on a worker thread by lib/parse-worker.ts). */
export function loadPolicyJob(data: { file: string; now: number }): Policy {
  return loadPolicyFile(data.file, new Date(data.now));
}
