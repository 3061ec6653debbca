/**
 * An outbound route to a model API (`tls: web`): the sidecar injects the API key from a file
 * (the agent never sees it, even when the upstream echoes it back), meters token usage from
 * plain and streamed responses, and charges it to the agent's own budget.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { webCertificate } from '../helpers/web-ca.js';
import type { Test } from 'tap';
import type { SidecarConfig } from '../../src/config/types.js';
import type { Sidecar } from '../../src/sidecar.js';

const KEY = 'sk-test-4f9a1c0e7b2d4e6f8a9b0c1d2e3f4a5b';

/** A fake OpenAI-style API over TLS (a test CA), recording the credentials it receives. */
class FakeModelApi {
  readonly seenAuth: string[] = [];
  server!: https.Server;

  async start(certPem: string, keyPem: string): Promise<number> {
    this.server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.seenAuth.push(String(req.headers.authorization));
        const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as { stream?: boolean }) : {};
        if (req.url === '/v1/echo') {
          // A hostile or debug endpoint reflecting the request: the key must not reach the agent.
          const text = JSON.stringify({ headers: req.headers });
          res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': String(req.headers.authorization), 'content-length': Buffer.byteLength(text) });
          res.end(text);
          return;
        }
        if (req.url === '/v1/broken') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"id": "x", "choices": [');
          return;
        }
        if (body.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}\n\n');
          res.write('data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"}}],"usage":null}\n\n');
          res.write('data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":2000,"completion_tokens":1000,"total_tokens":3000}}\n\n');
          res.end('data: [DONE]\n\n');
          return;
        }
        const text = JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          model: 'gpt-test',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 },
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }
}

const chat = (proxy: string, opts: { stream?: boolean; headers?: Record<string, string>; path?: string } = {}) =>
  viaProxy(proxy, 'POST', `http://openai${opts.path ?? '/v1/chat/completions'}`, {
    headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
    body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], ...(opts.stream ? { stream: true } : {}) }),
  });

async function setup(t: Test, limitUsd: number) {
  const policy = `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [agent.list]
    budget: { limit_usd: ${limitUsd}, period: monthly }
`;
  const mesh = await TestMesh.start({ agents: [], policy });
  t.teardown(() => mesh.close());
  // A web PKI server certificate (DNS name localhost) from a private CA, made by the openssl CLI.
  const { caFile, certPem, keyPem } = webCertificate(mesh.dir);
  const api = new FakeModelApi();
  const port = await api.start(certPem, keyPem);
  t.teardown(() => api.close());
  const keyFile = path.join(mesh.dir, 'openai-key');
  writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  const base = mesh.agentConfig('orchestrator', idOf('control-plane'));
  const config: SidecarConfig = {
    ...base,
    policy: mesh.policyFile,
    outbound: {
      ...base.outbound!,
      routes: [
        {
          name: 'openai',
          upstream: `https://localhost:${port}`,
          tls: 'web',
          caFile,
          connectTimeoutMs: 2_000,
          requestTimeoutMs: 5_000,
          injectHeaders: [{ name: 'authorization', file: keyFile, prefix: 'Bearer ' }],
          metering: { provider: 'openai', inputUsdPerMillion: 2.5, outputUsdPerMillion: 10, reserveUsd: 0.05 },
        },
        {
          // Nothing listens there: the reservation must be released.
          name: 'dead',
          upstream: 'https://localhost:1',
          tls: 'web',
          caFile,
          connectTimeoutMs: 1_000,
          requestTimeoutMs: 2_000,
          injectHeaders: [],
          metering: { provider: 'openai', inputUsdPerMillion: 2.5, outputUsdPerMillion: 10, reserveUsd: 0.05 },
        },
      ],
    },
  };
  const agent: Sidecar = await mesh.startSidecar('orchestrator', config);
  return { mesh, api, agent, keyFile, proxy: `http://127.0.0.1:${agent.outbound!.address()!.port}` };
}

const spentOf = (agent: Sidecar, limitUsd: number) => agent.ledger.snapshot([{ name: 'orchestrator', budget: { limitUsd, period: 'monthly' } }])[0]!.spent_usd;

async function until(fn: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('credential injection: the upstream sees the key, the agent never does', async (t) => {
  const { api, proxy, keyFile } = await setup(t, 100);
  const r = await chat(proxy, { headers: { authorization: 'Bearer agent-supplied-key' } });
  t.equal(r.status, 200, r.body);
  t.equal(api.seenAuth.at(-1), `Bearer ${KEY}`, 'the sidecar replaced the agent-sent key with its own');
  t.notOk(api.seenAuth.includes('Bearer agent-supplied-key'), 'the agent-sent key never left the pod');

  const echo = await chat(proxy, { path: '/v1/echo' });
  t.equal(echo.status, 200);
  t.notOk(echo.body.includes(KEY), 'the key is scrubbed from an echoing response body');
  t.notOk(JSON.stringify(echo.headers).includes(KEY), 'and from response headers');
  t.match(echo.body, /Bearer \[redacted\]/);
  t.equal(echo.headers['x-echo-auth'], 'Bearer [redacted]');

  // Rotation: a new key file is picked up without a restart.
  const next = 'sk-test-rotated-000000000000000000000001';
  writeFileSync(`${keyFile}.tmp`, next, { mode: 0o600 });
  renameSync(`${keyFile}.tmp`, keyFile);
  const deadline = Date.now() + 5_000;
  while (api.seenAuth.at(-1) !== `Bearer ${next}` && Date.now() < deadline) {
    await chat(proxy);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(api.seenAuth.at(-1), `Bearer ${next}`, 'the rotated key is used');

  // A missing secret stops the route (fail closed) instead of sending no key.
  rmSync(keyFile);
  const gone = Date.now() + 5_000;
  let last = await chat(proxy);
  while (last.status !== 503 && Date.now() < gone) {
    await new Promise((r) => setTimeout(r, 50));
    last = await chat(proxy);
  }
  t.equal(last.status, 503);
  t.match(JSON.parse(last.body).error, /credential/i);
});

t.test('metered usage, plain and streamed, is charged to our budget; refused once over', async (t) => {
  const limit = 0.03;
  const { proxy, agent } = await setup(t, limit);
  const dead = await viaProxy(proxy, 'POST', 'http://dead/v1/chat/completions', { body: '{}' });
  t.equal(dead.status, 503, 'an unreachable model API is a 503');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(spentOf(agent, limit), 0, 'and its reservation was released');
  const plain = await chat(proxy);
  t.equal(plain.status, 200);
  t.equal(JSON.parse(plain.body).usage.prompt_tokens, 1000, 'the response reaches the agent unchanged');
  // 1000 in x $2.50/M + 500 out x $10/M = $0.0075 (the $0.05 reservation was settled to it).
  await until(() => Math.abs(spentOf(agent, limit) - 0.0075) < 1e-9, 'the plain response to be settled');

  const streamed = await chat(proxy, { stream: true });
  t.equal(streamed.status, 200);
  t.match(streamed.body, /data: \[DONE\]/, 'the stream passes through');
  // + 2000 x 2.5/M + 1000 x 10/M = $0.015 -> $0.0225
  await until(() => Math.abs(spentOf(agent, limit) - 0.0225) < 1e-9, 'the streamed response to be settled');

  const broken = await chat(proxy, { path: '/v1/broken' });
  t.equal(broken.status, 200);
  // Unreadable usage keeps the $0.05 reservation: $0.0725, now over the limit.
  await until(() => Math.abs(spentOf(agent, limit) - 0.0725) < 1e-9, 'the unreadable response to keep its reservation');
  const refused = await chat(proxy);
  t.equal(refused.status, 402);
  t.same(JSON.parse(refused.body), { error: 'Budget exceeded' });

  const metrics = await (await fetch(`http://127.0.0.1:${agent.admin!.address()!.port}/metrics`)).text();
  t.match(metrics, /attest_sidecar_model_tokens_total\{route="openai",kind="input"[^}]*\} 3000/);
  t.match(metrics, /attest_sidecar_model_tokens_total\{route="openai",kind="output"[^}]*\} 1500/);
  t.match(metrics, /attest_sidecar_model_usage_unmetered_total\{route="openai",reason="usage_unreadable"[^}]*\} 1/);
  t.match(metrics, /attest_sidecar_budget_refusals_total\{agent="orchestrator",reason="budget_exceeded"[^}]*\} 1/);
  // Spend counts what was charged in the end (0.0075 + 0.015 + 0.05), not the reservations.
  const spend = /attest_sidecar_budget_spend_usd_total\{agent="orchestrator",source="metered"[^}]*\} ([0-9.e-]+)/.exec(metrics);
  t.ok(spend && Math.abs(Number(spend[1]) - 0.0725) < 1e-9, `metered spend metric ${spend?.[1]}`);
});
