// lethe serve through the official OpenAI client: chat and completions,
// streamed and not, usage, stop strings, n > 1, logprobs, unknown fields,
// and the errors the SDK surfaces.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { STORIES, requireModel, startServer, letheRun, request } from './lib.mjs';

requireModel(STORIES);
const MODEL = 'stories260K.gguf';
let srv, client;

before(async () => {
  srv = await startServer(['-m', STORIES, '-t', '1', '--chat-template', 'chatml', '--api-key', 'sekrit', '--parallel', '4']);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sekrit', maxRetries: 0 });
});
after(async () => { assert.equal(await srv.stop(), 0, 'the server exits cleanly on SIGTERM'); });

test('models lists the served model', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
});

test('completion, not streamed, equals lethe run (greedy)', async () => {
  const prompt = 'Once upon a time';
  const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 40, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.choices[0].text, letheRun(STORIES, prompt, { n: 40, temp: 0 }));
  assert.equal(r.usage.completion_tokens, 40);
  assert.equal(r.usage.prompt_tokens, 5);
  assert.equal(r.usage.total_tokens, 45);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('completion with sampling and a seed equals lethe run', async () => {
  const prompt = 'The little dog';
  const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 48, temperature: 0.9, seed: 1234, top_p: 0.9 });
  assert.equal(r.choices[0].text, letheRun(STORIES, prompt, { n: 48, temp: 0.9, seed: 1234, topP: 0.9 }));
});

test('completion streamed: one id, text equals the non-streamed text, usage last', async () => {
  const prompt = 'Lily went to the park';
  const stream = await client.completions.create({
    model: MODEL, prompt, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '', ids = new Set(), finish = null, usage = null;
  for await (const chunk of stream) {
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(ids.size, 1);
  assert.equal(finish, 'length');
  assert.equal(text, letheRun(STORIES, prompt, { n: 30, temp: 0 }));
  assert.equal(usage.completion_tokens, 30);
});

test('chat, not streamed', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 12, temperature: 0,
    messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat.' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 10);
});

test('chat streamed with include_usage: role first, same id, usage before [DONE]', async () => {
  const req = {
    model: MODEL, max_tokens: 16, temperature: 0,
    messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hello' }] }],
  };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', ids = new Set(), first = null, usageSeen = false, afterUsage = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    ids.add(chunk.id);
    if (usageSeen) afterUsage++;
    if (chunk.usage) { usageSeen = true; assert.equal(chunk.choices.length, 0); }
    for (const c of chunk.choices) {
      if (first === null) first = c.delta;
      if (c.delta.content) text += c.delta.content;
    }
  }
  assert.equal(ids.size, 1);
  assert.equal(first.role, 'assistant');
  assert.ok(usageSeen);
  assert.equal(afterUsage, 0, 'the usage chunk is the last before [DONE]');
  assert.equal(text, whole.choices[0].message.content);
});

test('stop strings end the text before the stop, never inside it', async () => {
  const prompt = 'Once upon a time';
  const full = letheRun(STORIES, prompt, { n: 60, temp: 0 });
  const stop = 'girl';
  assert.ok(full.includes(stop), `the reference text contains '${stop}': ${full}`);
  const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 60, temperature: 0, stop: [stop, 'zzzz'] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
  const s = await client.completions.create({ model: MODEL, prompt, max_tokens: 60, temperature: 0, stop, stream: true });
  let text = '', finish;
  for await (const chunk of s) for (const c of chunk.choices) { text += c.text; finish = c.finish_reason || finish; }
  assert.equal(text, full.slice(0, full.indexOf(stop)));
  assert.equal(finish, 'stop');
});

test('n > 1: every choice, its own seed, the first equals lethe run', async () => {
  const prompt = 'One day, a boy';
  const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 24, temperature: 1.0, seed: 7, n: 3 });
  assert.equal(r.choices.length, 3);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.choices[0].text, letheRun(STORIES, prompt, { n: 24, temp: 1.0, seed: 7 }));
  assert.equal(r.choices[1].text, letheRun(STORIES, prompt, { n: 24, temp: 1.0, seed: 8 }));
  assert.equal(r.usage.completion_tokens, r.choices.length * 24);
  assert.equal(r.usage.prompt_tokens, r.usage.prompt_tokens); // the prompt counts once
  const chat = await client.chat.completions.create({
    model: MODEL, n: 2, max_tokens: 8, temperature: 0.8, seed: 3, messages: [{ role: 'user', content: 'Hi' }], stream: true,
  });
  const seen = new Set();
  for await (const chunk of chat) for (const c of chunk.choices) seen.add(c.index);
  assert.deepEqual([...seen].sort(), [0, 1]);
});

test('logprobs: chat top_logprobs and completions logprobs', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3, messages: [{ role: 'user', content: 'Hi' }],
  });
  const lp = r.choices[0].logprobs.content;
  assert.ok(lp.length >= 1);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    // greedy: the chosen token is the most likely one
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6);
    assert.ok(Array.isArray(t.bytes));
  }
  const c = await client.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 4, temperature: 0, logprobs: 2 });
  const l = c.choices[0].logprobs;
  assert.equal(l.tokens.length, 4);
  assert.equal(l.token_logprobs.length, 4);
  assert.equal(l.top_logprobs.length, 4);
  assert.equal(l.tokens.join(''), c.choices[0].text);
  assert.deepEqual(l.text_offset[0], 0);
});

test('an unknown extra field and the fields the SDKs send are accepted', async () => {
  const r = await client.completions.create({
    model: MODEL, prompt: 'Hi', max_tokens: 3, temperature: 0, user: 'u1', best_of: 1, suffix: null, logit_bias: {},
    presence_penalty: 0.5, frequency_penalty: 0.5, // used
    some_future_field: { nested: [1, 2, 3] },
  });
  assert.equal(r.choices.length, 1);
  const c = await client.chat.completions.create({
    model: MODEL, max_completion_tokens: 3, messages: [{ role: 'user', content: 'Hi' }], parallel_tool_calls: false,
    response_format: { type: 'text' }, store: false, metadata: { a: 'b' }, unknown_thing: true,
  });
  assert.equal(c.choices[0].message.role, 'assistant');
});

test('the lethe extension chooses the KV policy and budget per request', async () => {
  const prompt = 'Once upon a time';
  const r = await client.completions.create({
    model: MODEL, prompt, max_tokens: 100, temperature: 0, lethe: { kv_policy: 'window', kv_budget: 64 },
  });
  assert.equal(r.choices[0].text, letheRun(STORIES, prompt, { n: 100, temp: 0, extra: ['--kv-policy', 'window', '--kv-budget', '64'] }));
  await assert.rejects(client.completions.create({ model: MODEL, prompt, max_tokens: 2, lethe: { kv_policy: 'nope' } }),
    (e) => e.status === 400);
});

test('errors through the SDK: 401, 404 model, 400 bad fields', async () => {
  const bad = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401 && e.code === 'invalid_api_key');
  await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x', max_tokens: 1 }),
    (e) => e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 1, temperature: -1 }),
    (e) => e.status === 400 && e.param === 'temperature');
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }),
    (e) => e.status === 400);
  const noKey = await request(srv, 'GET', '/v1/models');
  assert.equal(noKey.status, 401);
  assert.equal(noKey.json.error.code, 'invalid_api_key');
});

test('a list of prompts, token-id prompts and echo', async () => {
  const prompts = ['Once upon a time', 'The little dog'];
  const r = await client.completions.create({ model: MODEL, prompt: prompts, n: 2, max_tokens: 12, temperature: 0 });
  assert.equal(r.choices.length, 4);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(r.choices[0].text, letheRun(STORIES, prompts[0], { n: 12, temp: 0 }));
  assert.equal(r.choices[2].text, letheRun(STORIES, prompts[1], { n: 12, temp: 0 }));
  const ids = (await request(srv, 'POST', '/tokenize', { content: prompts[0], add_special: true }, { Authorization: 'Bearer sekrit' })).json.tokens;
  const t = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 12, temperature: 0 });
  assert.equal(t.choices[0].text, r.choices[0].text);
  const e = await client.completions.create({ model: MODEL, prompt: prompts[1], max_tokens: 6, temperature: 0, echo: true });
  assert.ok(e.choices[0].text.startsWith(prompts[1]));
  assert.equal(e.choices[0].text, prompts[1] + letheRun(STORIES, prompts[1], { n: 6, temp: 0 }));
});
