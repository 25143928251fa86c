// Server benchmark (not a test): node tests/server/bench.mjs [MODEL] [THREADS]
// Prints, from one run on one machine:
//   - aggregate generated tokens/s at 1, 4 and 16 concurrent streaming clients;
//   - time to first token of a chat's second turn with and without the prefix cache;
//   - a bounded load run (fixed request count, fixed concurrency): p50/p99 latency, errors.
// LETHE_BIN and LETHE_MODELS as for the tests.
import { STORIES, startServer, request, sseEvents, metric } from './lib.mjs';

const model = process.argv[2] || STORIES;
const threads = process.argv[3] || '2';
const pct = (v, p) => v.slice().sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(p * v.length))];

async function completion(srv, prompt, maxTokens) {
  const t0 = performance.now();
  const r = await request(srv, 'POST', '/v1/completions', {
    prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, lethe: { ignore_eos: true },
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text}`);
  const ev = sseEvents(r.text);
  return { ms: performance.now() - t0, tokens: ev.at(-2).usage.completion_tokens };
}

async function throughput(srv, clients, maxTokens) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: clients }, (_, i) => completion(srv, `Story number ${i}: once upon a time`, maxTokens)));
  const secs = (performance.now() - t0) / 1000;
  const tokens = res.reduce((a, r) => a + r.tokens, 0);
  return { tokens, secs, tps: tokens / secs };
}

// Time from sending a streamed chat request to its first content chunk.
function ttft(srv, messages, prefixCache) {
  return new Promise((resolve, reject) => {
    import('node:http').then(({ default: http }) => {
      const body = JSON.stringify({ messages, max_tokens: 4, temperature: 0, stream: true, lethe: { prefix_cache: prefixCache } });
      const t0 = performance.now();
      let first = null, text = '';
      const req = http.request({ host: '127.0.0.1', port: srv.port, method: 'POST', path: '/v1/chat/completions', agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
        res.on('data', (d) => {
          text += d;
          if (first === null && /"content":"[^"]/.test(text)) first = performance.now() - t0;
        });
        res.on('end', () => {
          const usage = sseEvents(text).filter((e) => e !== '[DONE]').map((e) => e.usage).find(Boolean);
          resolve({ ms: first ?? performance.now() - t0, text });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  });
}

const srv = await startServer(['-m', model, '-t', threads, '--parallel', '16', '--chat-template', 'chatml']);
try {
  const info = (await request(srv, 'GET', '/v1/models')).json.data[0];
  console.log(`model ${info.id}, ${threads} threads, context ${info.lethe.n_ctx}`);
  await throughput(srv, 2, 16); // warm-up
  console.log('\n| concurrent clients | generated tokens | seconds | aggregate tok/s |\n| --: | --: | --: | --: |');
  let one;
  for (const c of [1, 4, 16]) {
    const t = await throughput(srv, c, 128);
    one = one ?? t.tps;
    console.log(`| ${c} | ${t.tokens} | ${t.secs.toFixed(2)} | ${t.tps.toFixed(0)} (${(t.tps / one).toFixed(2)}x) |`);
  }

  // a long first turn, then its second turn, with and without the cache
  const nctx = info.lethe.n_ctx;
  const sentence = 'The story goes on and on. ';
  const per = (await request(srv, 'POST', '/tokenize', { content: sentence.repeat(10) })).json.tokens.length / 10;
  const sys = { role: 'system', content: sentence.repeat(Math.floor((0.8 * nctx - 64) / per)) }; // about 80% of the context
  const turn1 = [sys, { role: 'user', content: 'Tell me a story.' }];
  const first = await request(srv, 'POST', '/v1/chat/completions', { messages: turn1, max_tokens: 16, temperature: 0 });
  const turn2 = [...turn1, first.json.choices[0].message, { role: 'user', content: 'And then?' }];
  const cached = [], fresh = [];
  for (let i = 0; i < 5; i++) {
    fresh.push((await ttft(srv, turn2, false)).ms);
    cached.push((await ttft(srv, turn2, true)).ms);
  }
  const r2 = await request(srv, 'POST', '/v1/chat/completions', { messages: turn2, max_tokens: 1, temperature: 0 });
  if (r2.status !== 200) throw new Error(r2.text);
  console.log(`\nsecond turn: ${r2.json.usage.prompt_tokens} prompt tokens, ${r2.json.usage.prompt_tokens_details.cached_tokens} cached`);
  console.log(`time to first token, median of 5: without the prefix cache ${pct(fresh, 0.5).toFixed(1)} ms, with it ${pct(cached, 0.5).toFixed(1)} ms (${(pct(fresh, 0.5) / pct(cached, 0.5)).toFixed(1)}x)`);

  // bounded load: N requests, C at a time
  const N = 400, C = 8, lat = [];
  let errors = 0, next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) {
      const i = next++;
      const s = performance.now();
      const r = await request(srv, 'POST', '/v1/completions', { prompt: `Request ${i} once upon a time`, max_tokens: 32, temperature: 0.8, seed: i });
      if (r.status !== 200) errors++;
      lat.push(performance.now() - s);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  console.log(`\nload: ${N} requests, ${C} at a time, max_tokens 32: ${secs.toFixed(2)} s (${(N / secs).toFixed(1)} req/s), latency p50 ${pct(lat, 0.5).toFixed(1)} ms, p99 ${pct(lat, 0.99).toFixed(1)} ms, errors ${errors}`);
  console.log(`KV peak ${(await metric(srv, 'lethe_kv_bytes_peak')) / 1048576} MiB of ${(await metric(srv, 'lethe_kv_bytes_budget')) / 1048576} MiB`);
} finally {
  await srv.stop();
}
