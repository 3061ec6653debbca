/**
 * Caller authentication on the outbound listener (`caller_token_file`): only a caller that
 * presents the token as its proxy password (`http://agent:TOKEN@127.0.0.1:PORT`) may use the
 * identity. Real clients: curl, undici's ProxyAgent, Python requests and Go's net/http, each
 * configured the way an agent would be.
 */
import { execFile, spawnSync } from 'node:child_process';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ProxyAgent, request } from 'undici';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { PROXY_CLIENT, buildGoPrograms, goProgramsMissing } from '../helpers/go-programs.js';
import { waitUntil } from '../helpers/browser.js';

const run = promisify(execFile);
const TOKEN = 'c0ffee0123456789abcdef0123456789abcdef0123456789';

/** Runs a client (asynchronously: the sidecar answers from this process) and returns its stdout. */
async function client(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: timeoutMs, env: { ...process.env, ...env }, encoding: 'utf8' })).stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(`${cmd} failed: ${e.message} ${e.stderr ?? ''}`);
  }
}

const curlSkip = skipFor(toolsMissing(['curl'], 'curl'));
const pythonRequestsSkip = skipFor(
  toolsMissing(['python3'], 'python3 python3-requests') ??
    (spawnSync('python3', ['-c', 'import requests']).status === 0 ? undefined : 'python3 has no requests module (apt-get install python3-requests)'),
);
const goSkip = skipFor(goProgramsMissing(PROXY_CLIENT));

// Building the Go client (once per source version, then cached) can take minutes on a busy machine.
t.setTimeout(420_000);
const mesh = await TestMesh.start({ agents: [] });
t.teardown(() => mesh.close());
const tokenFile = path.join(mesh.dir, 'caller-token');
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
const base = mesh.agentConfig('orchestrator', idOf('control-plane'));
const agent = await mesh.startSidecar('orchestrator', { ...base, outbound: { ...base.outbound!, callerTokenFile: tokenFile } });
const port = agent.outbound!.address()!.port;
const withToken = (token: string) => `http://agent:${token}@127.0.0.1:${port}`;
const proxy = `http://127.0.0.1:${port}`;

t.test('curl: the token admits, no or a wrong token is a 407, and the token never leaves the pod', { skip: curlSkip }, async (t) => {
  const curl = (args: string[]) => client('curl', ['-sS', '--max-time', '20', '-D', '-', ...args]);
  const ok = await curl(['-x', withToken(TOKEN), 'http://control-plane/agents']);
  t.match(ok, /^HTTP\/1\.1 200 /);
  t.equal(mesh.app.seen.at(-1)?.headers['proxy-authorization'], undefined, 'the app never sees the proxy credentials');
  t.equal(mesh.app.seen.at(-1)?.url, '/agents');
  for (const args of [['-x', proxy], ['-x', withToken('wrong-token-0123456789abcdef')], ['-x', withToken(TOKEN.slice(0, -1))], ['-x', withToken(`${TOKEN}0`)]]) {
    const r = await curl([...args, 'http://control-plane/agents']);
    t.match(r, /^HTTP\/1\.1 407 /, args[1]!);
    t.match(r, /proxy-authenticate: Basic realm="attest-sidecar"/i);
    t.match(r, /"error":"Proxy authentication required/);
  }
  const metrics = await (await fetch(`${mesh.adminOf(agent)}/metrics`)).text();
  t.match(metrics, /attest_sidecar_requests_total\{direction="outbound",decision="deny",reason="caller_unauthenticated",sidecar="orchestrator"\} 4/);
  const status = (await (await fetch(`${mesh.adminOf(agent)}/status`)).json()) as { outbound: { caller_auth: boolean } };
  t.equal(status.outbound.caller_auth, true, 'the status shows that callers must authenticate');
});

t.test('undici ProxyAgent (absolute-form, no tunnel)', async (t) => {
  const dispatcher = new ProxyAgent({ uri: withToken(TOKEN), proxyTunnel: false });
  t.teardown(() => dispatcher.close());
  const r = await request('http://control-plane/agents', { dispatcher });
  t.equal(r.statusCode, 200);
  await r.body.text();
  const denied = new ProxyAgent({ uri: proxy, proxyTunnel: false });
  t.teardown(() => denied.close());
  // undici turns a proxy's 407 into an error of its own.
  await t.rejects(request('http://control-plane/agents', { dispatcher: denied }), /Proxy Authentication Required/);
});

t.test('Python requests with the token in its proxy URL', { skip: pythonRequestsSkip }, async (t) => {
  const script = `import sys, requests
r = requests.get('http://control-plane/agents', proxies={'http': sys.argv[1]}, timeout=20)
print(r.status_code)`;
  const ok = await client('python3', ['-c', script, withToken(TOKEN)]);
  const bad = await client('python3', ['-c', script, proxy]);
  t.equal(ok.trim(), '200');
  t.equal(bad.trim(), '407');
});

t.test("Go's net/http with HTTP_PROXY carrying the token", { timeout: 400_000, skip: goSkip }, async (t) => {
  const bin = (await buildGoPrograms(PROXY_CLIENT)).bins['proxy-client']!;
  const ok = await client(bin, ['http://control-plane/agents'], { HTTP_PROXY: withToken(TOKEN), NO_PROXY: '' });
  const bad = await client(bin, ['http://control-plane/agents'], { HTTP_PROXY: proxy, NO_PROXY: '' });
  t.match(ok, /^200 /);
  t.match(bad, /^407 /);
});

t.test('the token file is re-read when it changes; an unusable one refuses everything', async (t) => {
  const next = 'rotated-token-00000000000000000000000000000000';
  writeFileSync(`${tokenFile}.tmp`, next, { mode: 0o600 });
  renameSync(`${tokenFile}.tmp`, tokenFile);
  const status = async (token: string) => (await viaProxy(proxy, 'GET', 'http://control-plane/agents', { headers: { 'proxy-authorization': `Basic ${Buffer.from(`agent:${token}`).toString('base64')}` } })).status;
  await waitUntil(async () => (await status(next)) === 200, 'the rotated token to be accepted', { timeoutMs: 20_000 });
  t.equal(await status(TOKEN), 407, 'the old token no longer works');
  rmSync(tokenFile);
  await waitUntil(async () => (await status(next)) === 503, 'a missing token file to refuse every request', { timeoutMs: 20_000 });
  const r = await viaProxy(proxy, 'GET', 'http://control-plane/agents', { headers: { 'proxy-authorization': `Basic ${Buffer.from(`agent:${next}`).toString('base64')}` } });
  t.match(JSON.parse(r.body).error, /Caller token unavailable/);
  t.notOk(r.body.includes(next), 'the token is not in the error');
});
