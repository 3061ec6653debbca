/**
 * `attest-sidecar kill SPIFFE_ID`, `killall` and `restore`: clients of a sidecar's admin API.
 * The token is read from --token-file (default: the file the dev mesh writes) and sent as a
 * bearer token; it is never printed. With --spire-server-socket, kill also deletes the agent's
 * SPIRE registration entries (saved first) and restore re-creates them (src/spire/). Exit 0 on
 * success, 1 when the sidecar, the SPIRE server or the entries file refused, 2 on usage or
 * connection errors.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { devTokenFile } from '../mesh/paths.js';
import { errorMessage } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from '../spiffe/id.js';
import type { SpireEntryClient } from '../spire/entry-client.js';
import type { SpireStepReport } from '../spire/agent-entries.js';

/** host:port of the admin API the kill commands call without --admin: the dev mesh's control plane. */
export const DEFAULT_ADMIN = '127.0.0.1:15000';

export const KILL_USAGE = `  attest-sidecar kill SPIFFE_ID [--reason TEXT] [--admin URL] [--token-file FILE]
                 [--spire-server-socket unix:///PATH [--entries-file FILE]]
                                          revoke one agent: its connections close, later requests get 403;
                                          with --spire-server-socket also delete its SPIRE entries (saved to FILE)
  attest-sidecar killall [--reason TEXT] [--admin URL] [--token-file FILE]
                                          revoke every peer and stop this sidecar's outbound side
  attest-sidecar restore SPIFFE_ID | --all [--admin URL] [--token-file FILE]
                 [--spire-server-socket unix:///PATH [--entries-file FILE]]   (with a SPIFFE_ID)
                                          lift a local revocation (or the kill-all); with --spire-server-socket
                                          first re-create the saved SPIRE entries
      --admin defaults to http://${DEFAULT_ADMIN}; --token-file to $ATTEST_SIDECAR_DEV_STATE/admin-token
      (~/.attest-sidecar/dev/admin-token, written by \`attest-sidecar dev\`)
      --spire-server-socket: the SPIRE server's admin socket (server.socket_path), as unix:///path
      --entries-file defaults to $ATTEST_SIDECAR_DEV_STATE/spire-entries/<SPIFFE ID>-<hash>.json
`;

export interface CommandOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

type Cmd = 'kill' | 'killall' | 'restore';

interface SpireTarget {
  socket: string;
  id: SpiffeId;
  file: string;
}

export async function killCommand(cmd: Cmd, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CommandOutput> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        reason: { type: 'string' },
        admin: { type: 'string' },
        'token-file': { type: 'string' },
        all: { type: 'boolean' },
        'spire-server-socket': { type: 'string' },
        'entries-file': { type: 'string' },
      },
    });
  } catch (err) {
    return usage(cmd, errorMessage(err));
  }
  const { values, positionals } = parsed;
  const admin = (values.admin ?? `http://${DEFAULT_ADMIN}`).replace(/\/+$/, '');
  const tokenFile = values['token-file'] ?? devTokenFile(env);
  let body: Record<string, unknown>;
  if (cmd === 'kill') {
    if (positionals.length !== 1) return usage(cmd, 'kill needs exactly one SPIFFE_ID');
    body = { spiffe_id: positionals[0], ...(values.reason ? { reason: values.reason } : {}) };
  } else if (cmd === 'killall') {
    if (positionals.length) return usage(cmd, 'killall takes no SPIFFE ID');
    body = values.reason ? { reason: values.reason } : {};
  } else {
    if (values.all ? positionals.length !== 0 : positionals.length !== 1) return usage(cmd, 'restore needs one SPIFFE_ID or --all');
    body = values.all ? { all: true } : { spiffe_id: positionals[0] };
  }
  let spire: SpireTarget | undefined;
  if (values['spire-server-socket'] !== undefined || values['entries-file'] !== undefined) {
    const target = await spireTarget(cmd, values['spire-server-socket'], values['entries-file'], typeof body.spiffe_id === 'string' ? body.spiffe_id : undefined, env);
    if (typeof target === 'string') return usage(cmd, target);
    spire = target;
  }
  const sidecar = () => sidecarCall(cmd, admin, tokenFile, body);
  if (!spire) return sidecar();
  const { killAgentEntries, restoreAgentEntries } = await import('../spire/agent-entries.js');
  if (cmd === 'kill') {
    // The sidecar revocation first (instant), then SPIRE (no renewal); a failure of one never skips the other.
    const local = await sidecar();
    const remote = await withClient(spire, (client) => killAgentEntries({ client, id: spire.id, file: spire.file }));
    const notes: string[] = [];
    if (remote.exitCode !== 0 && local.exitCode === 0) notes.push(`the sidecar revocation of ${spire.id.toString()} is in force; SPIRE still renews its SVID until the entries are deleted (run kill again)`);
    if (remote.exitCode === 0 && local.exitCode !== 0) notes.push(`the SPIRE entries are deleted but the sidecar did not revoke ${spire.id.toString()}: peers accept it until its SVID's notAfter`);
    return combine(local, remote, notes);
  }
  // restore: entries back first; the sidecar revocation is lifted only once SPIRE has them all.
  const remote = await withClient(spire, (client) => restoreAgentEntries({ client, id: spire.id, file: spire.file }));
  if (remote.exitCode !== 0) return combine({ exitCode: 0, stdout: '', stderr: '' }, remote, [`the sidecar revocation of ${spire.id.toString()} was NOT lifted`]);
  return combine(await sidecar(), remote, []);
}

/** Checks the SPIRE flags before anything is changed; a string is a usage problem. */
async function spireTarget(cmd: Cmd, socket: string | undefined, entriesFile: string | undefined, spiffeId: string | undefined, env: NodeJS.ProcessEnv): Promise<SpireTarget | string> {
  if (cmd === 'killall' || spiffeId === undefined) return `--spire-server-socket and --entries-file need one SPIFFE_ID (${cmd === 'killall' ? 'killall' : 'restore --all'} never touches SPIRE entries)`;
  if (socket === undefined) return '--entries-file needs --spire-server-socket';
  const [{ parseSpireServerSocket }, { defaultEntriesFile }] = await Promise.all([import('../spire/entry-client.js'), import('../spire/entries-file.js')]);
  let id: SpiffeId;
  try {
    parseSpireServerSocket(socket);
    id = parseSpiffeId(spiffeId);
  } catch (err) {
    return errorMessage(err);
  }
  if (id.path === '') return `${spiffeId} names a trust domain, not an agent`;
  return { socket, id, file: entriesFile !== undefined ? path.resolve(entriesFile) : defaultEntriesFile(id, env) };
}

async function withClient(spire: SpireTarget, run: (client: SpireEntryClient) => Promise<SpireStepReport>): Promise<SpireStepReport> {
  const { SpireEntryClient } = await import('../spire/entry-client.js');
  let client: SpireEntryClient;
  try {
    client = new SpireEntryClient({ socket: spire.socket });
  } catch (err) {
    return { exitCode: 1, lines: [`SPIRE: cannot create the Entry API client: ${errorMessage(err)}`] };
  }
  try {
    return await run(client);
  } finally {
    client.close();
  }
}

/** Both steps' output; the exit code is the worse of the two. */
function combine(local: CommandOutput, remote: { exitCode: number; lines: string[] }, notes: string[]): CommandOutput {
  const text = remote.lines.map((l) => `${l}\n`).join('');
  return {
    exitCode: Math.max(local.exitCode, remote.exitCode),
    stdout: local.stdout + (remote.exitCode === 0 ? text : ''),
    stderr: local.stderr + (remote.exitCode === 0 ? '' : text) + notes.map((n) => `attest-sidecar: ${n}\n`).join(''),
  };
}

async function sidecarCall(cmd: Cmd, admin: string, tokenFile: string, body: Record<string, unknown>): Promise<CommandOutput> {
  let token: string;
  try {
    token = readFileSync(tokenFile, 'utf8').trim();
  } catch (err) {
    return { exitCode: 2, stdout: '', stderr: `attest-sidecar ${cmd}: cannot read token file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}\n` };
  }
  let res: Response;
  try {
    res = await fetch(`${admin}/v1/${cmd}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { exitCode: 2, stdout: '', stderr: `attest-sidecar ${cmd}: cannot reach the admin API at ${admin}: ${cause ?? errorMessage(err)}\n` };
  }
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // reported below with the raw status
  }
  if (!res.ok) {
    return { exitCode: 1, stdout: '', stderr: `attest-sidecar ${cmd}: refused (${res.status}): ${typeof json.error === 'string' ? json.error : text.slice(0, 200)}\n` };
  }
  const summary =
    cmd === 'kill'
      ? `revoked ${String(body.spiffe_id)}`
      : cmd === 'killall'
        ? 'kill-all in force: every peer refused, outbound stopped'
        : json.restored
          ? `restored ${body.all ? 'all (kill-all lifted)' : String(body.spiffe_id)}`
          : `nothing to restore for ${body.all ? 'kill-all' : String(body.spiffe_id)}`;
  return { exitCode: 0, stdout: `${summary}\n${JSON.stringify(json.revocations ?? {}, null, 2)}\n`, stderr: '' };
}

function usage(cmd: string, problem: string): CommandOutput {
  return { exitCode: 2, stdout: '', stderr: `attest-sidecar ${cmd}: ${problem}\n\nUsage:\n${KILL_USAGE}` };
}
