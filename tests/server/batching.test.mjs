// Continuous batching, admission by KV budget, the prefix cache and
// disconnects, on a real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { STORIES, requireModel, startServer, letheRun, request, metric, sseEvents, streamThenDrop, sleep } from './lib.mjs';

requireModel(STORIES);
const MODEL = 'stories260K.gguf';

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Tom', 'One day, a girl named Sue', 'The sun was',
  'A big red ball', 'Tim had a toy', 'In the park', 'The cat', 'Mom said', 'There was a tree', 'Ben liked to',
  'The bird sang', 'A boy found a box', 'It was a cold day', 'Sara wanted'];

// Each client's settings: half greedy, half sampled with their own seeds.
function settings(i) {
  return i % 2 ? { temp: 0, seed: 0 } : { temp: 0.8, seed: 100 + i };
}

// 16 clients at once over raw SSE; every chunk parsed, in order.
async function sixteenStreams(srv, n) {
  const reqs = PROMPTS.map((prompt, i) => {
    const st = settings(i);
    return request(srv, 'POST', '/v1/completions', {
      model: MODEL, prompt, max_tokens: n, temperature: st.temp, seed: st.seed, stream: true,
      stream_options: { include_usage: true },
    });
  });
  const res = await Promise.all(reqs);
  return res.map((r) => {
    assert.equal(r.status, 200, r.text);
    const ev = sseEvents(r.text);
    assert.equal(ev.at(-1), '[DONE]');
    const chunks = ev.slice(0, -1);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id on every chunk');
    const usage = chunks.at(-1).usage;
    let text = '', finish = 0;
    for (const c of chunks) for (const ch of c.choices) { text += ch.text; if (ch.finish_reason) finish++; }
    assert.equal(finish, 1, 'one finish_reason');
    return { text, usage };
  });
}

test('16 concurrent streaming clients each get exactly what lethe run gives', async () => {
  const srv = await startServer(['-m', STORIES, '-t', '2', '--parallel', '16']);
  try {
    const n = 80;
    const got = await sixteenStreams(srv, n);
    for (let i = 0; i < 16; i++) {
      const st = settings(i);
      const want = letheRun(STORIES, PROMPTS[i], { n, temp: st.temp, seed: st.seed });
      assert.equal(got[i].text, want, `client ${i} (${PROMPTS[i]})`);
      assert.ok(got[i].usage.completion_tokens <= n);
    }
    assert.ok((await metric(srv, 'lethe_steps_total')) < 16 * n, 'the clients shared steps');
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});

test('the same under a small KV budget: requests queue, the cap holds, no 5xx', async () => {
  // each request may hold (5 + 120 tokens) -> 5 pages per stream of 32 slots, 20 streams: 100 pages of 1 KiB;
  // 0.25 MiB = 256 pages: two requests at a time, the rest wait
  const srv = await startServer(['-m', STORIES, '-t', '2', '--parallel', '16', '--kv-budget-mib', '0.25']);
  try {
    const n = 120;
    const budget = await metric(srv, 'lethe_kv_bytes_budget');
    assert.equal(budget, 0.25 * 1048576);
    const fivexx = async () => [...(await request(srv, 'GET', '/metrics')).text.matchAll(/status="5\d\d"} (\d+)/g)]
      .reduce((a, m) => a + Number(m[1]), 0);
    const errorsBefore = await fivexx(); // the start-up health polls may have seen 503 while loading
    let maxQueue = 0, maxUsed = 0, polling = true;
    const poll = (async () => {
      while (polling) {
        maxQueue = Math.max(maxQueue, await metric(srv, 'lethe_queue_length'));
        maxUsed = Math.max(maxUsed, await metric(srv, 'lethe_kv_bytes_used'));
        await sleep(5);
      }
    })();
    const got = await sixteenStreams(srv, n);
    polling = false;
    await poll;
    for (let i = 0; i < 16; i++) {
      const st = settings(i);
      assert.equal(got[i].text, letheRun(STORIES, PROMPTS[i], { n, temp: st.temp, seed: st.seed }), `client ${i}`);
    }
    assert.ok(maxQueue > 0, 'requests had to wait');
    assert.ok(maxUsed <= budget, `KV bytes ${maxUsed} within the cap ${budget}`);
    assert.ok((await metric(srv, 'lethe_kv_bytes_peak')) <= budget);
    assert.equal(await fivexx(), errorsBefore, 'no 5xx');
    // without max_tokens a request gets what the pool can hold for it, not a 400
    const open = await request(srv, 'POST', '/v1/completions', { prompt: 'Once upon a time', temperature: 0, lethe: { ignore_eos: true } });
    assert.equal(open.status, 200, open.text);
    assert.equal(open.json.choices[0].finish_reason, 'length');
    assert.ok((await metric(srv, 'lethe_kv_bytes_peak')) <= budget);
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});

test('a second chat turn reuses the first turn\'s pages', async () => {
  const srv = await startServer(['-m', STORIES, '-t', '1', '--chat-template', 'chatml']);
  try {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const system = { role: 'system', content: 'You are a storyteller who tells short and happy stories to children. '.repeat(4) };
    const turn1 = [system, { role: 'user', content: 'Tell me a story about a dog.' }];
    const r1 = await client.chat.completions.create({ model: MODEL, messages: turn1, max_tokens: 24, temperature: 0 });
    assert.equal(r1.usage.prompt_tokens_details.cached_tokens, 0);
    const turn2 = [...turn1, r1.choices[0].message, { role: 'user', content: 'And then?' }];
    const r2 = await client.chat.completions.create({ model: MODEL, messages: turn2, max_tokens: 8, temperature: 0 });
    // the shared prefix: the tokens of turn 2's prompt that equal turn 1's prompt and reply
    const t1 = (await request(srv, 'POST', '/tokenize', { content: render(turn1) + r1.choices[0].message.content, add_special: true })).json.tokens;
    const t2 = (await request(srv, 'POST', '/tokenize', { content: render(turn2), add_special: true })).json.tokens;
    let shared = 0;
    while (shared < t1.length && t1[shared] === t2[shared]) shared++;
    assert.ok(shared > r1.usage.prompt_tokens, `the reply is shared too (${shared} > ${r1.usage.prompt_tokens})`);
    // the cache holds what ran: the prompt and every reply token but the last (sampled, never run)
    const held = r1.usage.prompt_tokens + r1.usage.completion_tokens - 1;
    assert.equal(r2.usage.prompt_tokens_details.cached_tokens, Math.min(shared, held));
    assert.equal(r2.usage.prompt_tokens, t2.length);
    // the same answer as without the cache
    const r3 = await client.chat.completions.create({ model: MODEL, messages: turn2, max_tokens: 8, temperature: 0, lethe: { prefix_cache: false } });
    assert.equal(r3.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(r3.choices[0].message.content, r2.choices[0].message.content);
    assert.ok((await metric(srv, 'lethe_prefix_cache_hits_total')) >= 1);
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});

// ChatML as the server renders it (the chatml template of lethe_chat_apply)
function render(msgs) {
  return msgs.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n';
}

test('a client that disconnects mid-stream has its memory freed', async () => {
  const srv = await startServer(['-m', STORIES, '-t', '1', '--no-prefix-cache']);
  try {
    const base = await metric(srv, 'lethe_kv_bytes_used');
    const body = { model: MODEL, prompt: 'Once upon a time', max_tokens: 1900, temperature: 0, stream: true, lethe: { ignore_eos: true } };
    const got = await streamThenDrop(srv, '/v1/completions', body, (t) => (t.match(/data: /g) || []).length >= 5);
    assert.match(got, /text_completion/);
    let used;
    for (let i = 0; i < 100; i++) {
      used = await metric(srv, 'lethe_kv_bytes_used');
      if (used === base && (await metric(srv, 'lethe_active_sequences')) === 0) break;
      await sleep(20);
    }
    assert.equal(used, base, 'KV bytes back to the baseline');
    assert.equal(await metric(srv, 'lethe_requests_cancelled_total'), 1);
    const r = await request(srv, 'POST', '/v1/completions', { prompt: 'Hi', max_tokens: 2 });
    assert.equal(r.status, 200);
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});

test('keep-alive comments while a long prompt prefills', async () => {
  const srv = await startServer(['-m', STORIES, '-t', '1', '--keepalive-ms', '10', '--batch-tokens', '16']);
  try {
    // 16 tokens a step: the prompt takes many steps before the first token
    const prompt = 'the cat sat on the mat and the dog ran to the park. '.repeat(60);
    const r = await request(srv, 'POST', '/v1/completions', { prompt, max_tokens: 2, stream: true });
    assert.equal(r.status, 200);
    const first = r.text.indexOf('data: ');
    assert.ok(r.text.indexOf(': keep-alive') >= 0 && r.text.indexOf(': keep-alive') < first, r.text.slice(0, 200));
    assert.equal(sseEvents(r.text).at(-1), '[DONE]');
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});
