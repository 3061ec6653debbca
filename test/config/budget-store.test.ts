/** budget.store and budget.redis: what the loader accepts, resolves and refuses. */
import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { BASE_CONFIG, configProblems } from '../helpers/config.js';

const parse = (text: string) => parseConfig(BASE_CONFIG + text, '/etc/attest/sidecar.yaml', {});

t.test('redis with a password file: the path resolves against the config folder', async (t) => {
  const c = parse('budget: { store: redis, redis: { url: "redis://redis:6379", password_file: secrets/redis-password } }\n');
  t.same(c.budget, { store: 'redis', url: 'redis://redis:6379', keyPrefix: 'attest-sidecar:budget:', timeoutMs: 500, passwordFile: '/etc/attest/secrets/redis-password' });
  const absolute = parse('budget: { store: redis, redis: { url: "rediss://redis:6380", password_file: /var/run/secrets/redis/password } }\n');
  t.equal(absolute.budget.store === 'redis' && absolute.budget.passwordFile, '/var/run/secrets/redis/password');
  const none = parse('budget: { store: redis, redis: { url: "redis://redis:6379" } }\n');
  t.notOk(none.budget.store === 'redis' && 'passwordFile' in none.budget, 'no password file: none in the config');
});

t.test('refusals name the key', async (t) => {
  t.match(configProblems('budget: { store: redis, redis: { url: "redis://:hunter2@redis:6379", password_file: pw } }\n'), /budget\.redis\.password_file.*already carries a password/);
  t.match(configProblems('budget: { store: redis, redis: { url: "redis://redis:6379", password_file: 7 } }\n'), /password_file/);
  t.match(configProblems('budget: { store: redis, redis: { url: "redis://redis:6379", password: x } }\n'), /password/);
  t.match(configProblems('budget: { store: file, redis: { url: "redis://redis:6379" } }\n'), /only with 'store: redis'/);
});
