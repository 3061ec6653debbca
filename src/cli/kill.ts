/**
 * `attest-sidecar kill SPIFFE_ID`, `killall` and `restore`: clients of a sidecar's admin API.
 * The token is read from --token-file (default: the file the dev mesh writes) and sent as a
 * bearer token; it is never printed. Exit 0 on success, 1 when the sidecar refused, 2 on usage
 * or connection errors.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { devTokenFile } from '../mesh/paths.js';
import { errorMessage } from '../errors.js';

/** host:port of the admin API the kill commands call without --admin: the dev mesh's control plane. */
export const DEFAULT_ADMIN = '127.0.0.1:15000';

export const KILL_USAGE = `  attest-sidecar kill SPIFFE_ID [--reason TEXT] [--admin URL] [--token-file FILE]
                                          revoke one agent: its connections close, later requests get 403
  attest-sidecar killall [--reason TEXT] [--admin URL] [--token-file FILE]
                                          revoke every peer and stop this sidecar's outbound side
  attest-sidecar restore SPIFFE_ID | --all [--admin URL] [--token-file FILE]
                                          lift a local revocation (or the kill-all)
      --admin defaults to http://${DEFAULT_ADMIN}; --token-file to $ATTEST_SIDECAR_DEV_STATE/admin-token
      (~/.attest-sidecar/dev/admin-token, written by \`attest-sidecar dev\`)
`;

export interface CommandOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function killCommand(cmd: 'kill' | 'killall' | 'restore', args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CommandOutput> {
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
