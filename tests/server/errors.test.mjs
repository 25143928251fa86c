// Bad input over raw HTTP: every error is a clear 4xx in OpenAI's error
// shape, the server stays up, and later requests succeed.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { STORIES, requireModel, startServer, request, metric, sleep } from './lib.mjs';

requireModel(STORIES);
let srv;

before(async () => {
  srv = await startServer(['-m', STORIES, '-t', '1', '--chat-template', 'chatml', '--max-body', '65536', '--parallel', '2', '--queue', '8']);
});
after(async () => { assert.equal(await srv.stop(), 0); });

function isError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 5);
  assert.equal(typeof r.json.error.type, 'string');
  assert.ok('param' in r.json.error && 'code' in r.json.error);
}

const ok = { prompt: 'Once', max_tokens: 2, temperature: 0 };

test('400: broken JSON, not an object, wrong types, bad ranges', async () => {
  isError(await request(srv, 'POST', '/v1/completions', '{"prompt": "x",'), 400);
  isError(await request(srv, 'POST', '/v1/completions', '[1,2,3]'), 400);
  isError(await request(srv, 'POST', '/v1/completions', ''), 400);
  for (const bad of [
    { prompt: 42 }, { prompt: 'x', max_tokens: 'ten' }, { prompt: 'x', temperature: '0' }, { prompt: 'x', stream: 'yes' },
    { prompt: 'x', n: 0 }, { prompt: 'x', n: 1.5 }, { prompt: 'x', top_p: 2 }, { prompt: 'x', temperature: -0.5 },
    { prompt: 'x', stop: [1] }, { prompt: 'x', stop: '' }, { prompt: 'x', max_tokens: 0 }, { prompt: 'x', logprobs: 9 },
    { prompt: [] }, { prompt: [[999999]] }, { prompt: 'x', lethe: { kv_budget: -1 } }, { prompt: 'x', seed: 'a' },
  ]) {
    const r = await request(srv, 'POST', '/v1/completions', bad);
    isError(r, 400);
  }
  for (const bad of [{}, { messages: 'hi' }, { messages: [] }, { messages: [{ content: 'x' }] },
    { messages: [{ role: 'user', content: 5 }] }, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] },
    { messages: [{ role: 'user', content: 'x' }], top_logprobs: 3 }]) {
    isError(await request(srv, 'POST', '/v1/chat/completions', bad), 400);
  }
});

test('400: a max_tokens of 1e9 and a prompt past the context, saying why', async () => {
  const r = await request(srv, 'POST', '/v1/completions', { prompt: 'Once', max_tokens: 1e9 });
  isError(r, 400);
  assert.match(r.json.error.message, /context/);
  const long = 'the cat sat on the mat. '.repeat(400);
  const r2 = await request(srv, 'POST', '/v1/completions', { prompt: long, max_tokens: 4 });
  isError(r2, 400);
  assert.equal(r2.json.error.code, 'context_length_exceeded');
});

test('400: bodies that are not UTF-8', async () => {
  const body = Buffer.concat([Buffer.from('{"prompt": "'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('", "max_tokens": 2}')]);
  const r = await request(srv, 'POST', '/v1/completions', body);
  isError(r, 400);
  assert.equal(r.json.error.code, 'invalid_utf8');
});

test('404 unknown route and model, 405 wrong method', async () => {
  isError(await request(srv, 'GET', '/v1/nothing'), 404);
  isError(await request(srv, 'POST', '/v1/completions', { ...ok, model: 'gpt-4o' }), 404);
  isError(await request(srv, 'GET', '/v1/models/nope'), 404);
  const r = await request(srv, 'GET', '/v1/completions');
  isError(r, 405);
  assert.equal(r.headers.allow, 'POST');
  isError(await request(srv, 'POST', '/v1/models', {}), 405);
});

test('413: a huge body, by Content-Length and without it', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(200000) });
  isError(await request(srv, 'POST', '/v1/completions', big), 413);
  // chunked upload: no Content-Length
  const r = await new Promise((resolve, reject) => {
    import('node:http').then(({ default: http }) => {
      const req = http.request({ host: '127.0.0.1', port: srv.port, method: 'POST', path: '/v1/completions',
        headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }, (res) => {
        let t = '';
        res.on('data', (d) => { t += d; });
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(t), text: t }));
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(10000));
      req.end();
    });
  });
  isError(r, 413);
});

test('tokenize and detokenize', async () => {
  const t = await request(srv, 'POST', '/tokenize', { content: 'Once upon a time', add_special: true });
  assert.equal(t.status, 200);
  assert.equal(t.json.tokens[0], 1);
  const d = await request(srv, 'POST', '/detokenize', { tokens: t.json.tokens.slice(1) });
  assert.equal(d.status, 200);
  assert.equal(d.json.content.trim(), 'Once upon a time');
  isError(await request(srv, 'POST', '/tokenize', { content: 3 }), 400);
  isError(await request(srv, 'POST', '/detokenize', { tokens: [-1] }), 400);
});

test('1,000 requests in about a second: each answered, no 5xx, the server stays up', async () => {
  const statuses = new Map();
  const started = Date.now();
  const all = [];
  for (let i = 0; i < 1000; i++) {
    const kind = i % 4;
    const p = kind === 0 ? request(srv, 'POST', '/v1/completions', '{broken')
      : kind === 1 ? request(srv, 'POST', '/v1/completions', { prompt: 'Hi', max_tokens: 1e9 })
        : kind === 2 ? request(srv, 'GET', '/nowhere')
          : request(srv, 'POST', '/v1/completions', { prompt: 'Once', max_tokens: 4, temperature: 0 });
    all.push(p.then((r) => statuses.set(r.status, (statuses.get(r.status) || 0) + 1),
      (e) => statuses.set(`error ${e.code}`, (statuses.get(`error ${e.code}`) || 0) + 1)));
    if (i % 50 === 49) await sleep(40);
  }
  await Promise.all(all);
  const secs = (Date.now() - started) / 1000;
  const summary = JSON.stringify([...statuses]);
  for (const k of statuses.keys()) assert.ok([200, 400, 404, 429].includes(k), `unexpected ${k} in ${summary}`);
  assert.equal((statuses.get(400) || 0), 500, summary);
  assert.equal((statuses.get(404) || 0), 250, summary);
  assert.equal((statuses.get(200) || 0) + (statuses.get(429) || 0), 250, summary);
  console.log(`# 1000 requests in ${secs.toFixed(2)} s: ${summary}`);
  const r = await request(srv, 'POST', '/v1/completions', ok);
  assert.equal(r.status, 200);
  assert.equal(await metric(srv, 'lethe_active_sequences'), 0);
});

test('429 with Retry-After when the queue is full', async () => {
  const s2 = await startServer(['-m', STORIES, '-t', '1', '--parallel', '1', '--queue', '1']);
  try {
    // each takes a few hundred ms: a runs, b waits in the queue, c finds it full
    const long = { prompt: 'Once upon a time', max_tokens: 1900, temperature: 0, lethe: { ignore_eos: true } };
    const a = request(s2, 'POST', '/v1/completions', long);
    await sleep(30);
    const b = request(s2, 'POST', '/v1/completions', long);
    await sleep(30);
    const c = await request(s2, 'POST', '/v1/completions', long);
    isError(c, 429);
    assert.equal(c.headers['retry-after'], '1');
    assert.equal((await a).status, 200);
    assert.equal((await b).status, 200);
  } finally {
    assert.equal(await s2.stop(), 0);
  }
});

test('503 while the model loads, then 200', async () => {
  const s3 = await startServer(['-m', STORIES, '-t', '1'], { env: { LETHE_TEST_LOAD_DELAY_MS: '1500' }, waitReady: false });
  try {
    const h = await request(s3, 'GET', '/health');
    isError(h, 503);
    isError(await request(s3, 'POST', '/v1/completions', ok), 503);
    for (let i = 0; i < 100; i++) {
      if ((await request(s3, 'GET', '/health')).status === 200) break;
      await sleep(50);
    }
    assert.equal((await request(s3, 'POST', '/v1/completions', ok)).status, 200);
  } finally {
    assert.equal(await s3.stop(), 0);
  }
});

test('an unrecognised --chat-template is a start-up error naming the options', async () => {
  await assert.rejects(startServer(['-m', STORIES, '--chat-template', 'klingon']), (e) => /chatml/.test(e.message));
});
