// Tools and structured memory through the server: client-declared tools
// come back as OpenAI tool_calls; tools the server was started with run
// inside the inference (structured memory); memory rules prune spans.
// Replies are teacher-forced (lethe.force_text): the test models cannot
// write tool calls themselves. (force_text is tokenised as text: with the
// SentencePiece vocabulary of the test model it starts with a space.)
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { STORIES, requireModel, startServer, request, metric } from './lib.mjs';

requireModel(STORIES);
const MODEL = 'stories260K.gguf';
let srv, client;

before(async () => {
  srv = await startServer(['-m', STORIES, '-t', '1', '--chat-template', 'chatml', '--tool', 'echo=cat']);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => { assert.equal(await srv.stop(), 0); });

const tools = [{
  type: 'function',
  function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
}];
const call = (city) => `<tool_call>\n{"name": "get_weather", "arguments": {"city": "${city}"}}\n</tool_call>`;

test('client tools: the call comes back as tool_calls, not text', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 400, temperature: 0, tools, messages: [{ role: 'user', content: 'Weather in Paris?' }],
    lethe: { force_text: `Let me look.${call('Paris')}\n${call('Rome')} and then some words` },
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.content.trim(), 'Let me look.');
  assert.equal(c.message.tool_calls.length, 2);
  assert.equal(c.message.tool_calls[0].type, 'function');
  assert.equal(c.message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), { city: 'Paris' });
  assert.deepEqual(JSON.parse(c.message.tool_calls[1].function.arguments), { city: 'Rome' });
  assert.notEqual(c.message.tool_calls[0].id, c.message.tool_calls[1].id);

  // the next turn sends the calls and their results back
  const r2 = await client.chat.completions.create({
    model: MODEL, max_tokens: 4, temperature: 0, tools,
    messages: [{ role: 'user', content: 'Weather in Paris?' }, c.message,
      { role: 'tool', tool_call_id: c.message.tool_calls[0].id, content: '{"temp": 21}' },
      { role: 'tool', tool_call_id: c.message.tool_calls[1].id, content: '{"temp": 25}' }],
  });
  assert.equal(r2.choices[0].message.role, 'assistant');
});

test('client tools streamed: delta.tool_calls with an index per call', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, max_tokens: 400, temperature: 0, tools, stream: true, messages: [{ role: 'user', content: 'Weather?' }],
    lethe: { force_text: call('Oslo') },
  });
  const calls = [];
  let finish = null, content = '';
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      if (ch.delta.tool_calls) calls.push(...ch.delta.tool_calls);
      if (ch.delta.content) content += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(content.trim(), '');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].index, 0);
  assert.equal(calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: 'Oslo' });
});

test('without tools in the request the text stays text', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 200, temperature: 0, messages: [{ role: 'user', content: 'Hi' }], lethe: { force_text: call('Paris') },
  });
  assert.ok(r.choices[0].message.content.trimStart().startsWith(call('Paris')));
  assert.equal(r.choices[0].message.tool_calls, undefined);
});

test('a server tool runs inside the inference (structured memory)', async () => {
  const before = await metric(srv, 'lethe_memory_tool_calls_total');
  const r = await request(srv, 'POST', '/v1/completions', {
    prompt: 'Once', max_tokens: 200, temperature: 0,
    lethe: { memory: 'tool', force_text: '<tool_call>{"name": "echo", "arguments": {"x": 42}}</tool_call> ok' },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(await metric(srv, 'lethe_memory_tool_calls_total'), before + 1);
  assert.equal(await metric(srv, 'lethe_memory_tool_errors_total'), 0);
});

test('memory rules prune a finished think block once the answer starts', async () => {
  const thought = 'I think about the cat and the dog and the sun. '.repeat(8);
  const r = await request(srv, 'POST', '/v1/completions', {
    prompt: 'Once', max_tokens: 600, temperature: 0, lethe: { memory: 'think', force_text: `<think>${thought}</think>\nThe answer is here.` },
  });
  assert.equal(r.status, 200, r.text);
  assert.ok((await metric(srv, 'lethe_memory_spans_pruned_total')) >= 1);
  assert.ok((await metric(srv, 'lethe_memory_tokens_pruned_total')) > 50);
  assert.ok(r.json.choices[0].text.trimStart().startsWith(`<think>${thought}</think>`), 'the client still gets the whole text');
  const bad = await request(srv, 'POST', '/v1/completions', { prompt: 'x', lethe: { memory: 'think', kv_policy: 'window', kv_reindex: true } });
  assert.equal(bad.status, 400);
  // under an evicting policy the open block is protected and the request runs
  const w = await request(srv, 'POST', '/v1/completions', {
    prompt: 'Once', max_tokens: 600, temperature: 0,
    lethe: { memory: 'think', kv_policy: 'window', kv_budget: 256, force_text: `<think>${thought}</think>\nThe answer is here.` },
  });
  assert.equal(w.status, 200, w.text);
  assert.ok(w.json.choices[0].text.trimStart().startsWith(`<think>${thought}</think>`));
});
