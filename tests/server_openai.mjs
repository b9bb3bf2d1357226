// tests/server_openai.mjs: the official `openai` SDK (tests/package.json) against a running
// `slmesh serve` (BASE, KEY, MODEL_NAME, SCORE_JSON, SCORE_TEXT from tests/server_openai.sh):
// models list, chat (plain and streamed, equal for one seed), completions echo+logprobs equal
// to `slmesh score`, embeddings, error classes, a client that aborts mid-stream (slot freed,
// server fine), and a bounded load test: 64 concurrent streams equal to the same requests
// made one at a time. Prints "N passed, N failed"; exits 1 on any failure.
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

const { BASE, KEY, MODEL_NAME, SCORE_JSON, SCORE_TEXT } = process.env;
const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000 });
const LOAD_STREAMS = 64; // concurrent streaming requests of the load test
const LOAD_TOKENS = 24;  // tokens each

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

async function busySlots() {
  const r = await fetch(`${BASE}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
  const text = await r.text();
  const m = text.match(new RegExp(`^slmesh_busy_slots\\{model="${MODEL_NAME}"\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : -1;
}

async function streamText(params, opts) {
  const stream = await client.completions.create({ ...params, stream: true }, opts);
  let text = '', finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish };
}

await check('models list', async () => {
  const list = await client.models.list();
  assert.ok(list.data.some((m) => m.id === MODEL_NAME));
});

await check('chat, plain and streamed', async () => {
  const params = { model: MODEL_NAME, messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 20, seed: 42 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.usage.completion_tokens > 0);
  const s = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, r.choices[0].message.content);
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
  assert.equal(finish, r.choices[0].finish_reason);
});

await check('completions echo+logprobs equals slmesh score', async () => {
  const score = JSON.parse(readFileSync(SCORE_JSON, 'utf8'));
  const r = await client.completions.create({ model: MODEL_NAME, prompt: SCORE_TEXT, max_tokens: 0, echo: true, logprobs: 5 });
  const lp = r.choices[0].logprobs;
  assert.equal(r.choices[0].text, SCORE_TEXT);
  assert.equal(lp.token_logprobs.length, score.tokens.length);
  assert.equal(lp.token_logprobs[0], null);
  for (let i = 1; i < score.tokens.length; i++) {
    const ref = score.positions[i - 1].top;
    const mine = Object.values(lp.top_logprobs[i]).sort((a, b) => b - a);
    assert.ok(Math.abs(mine[0] - ref[0][1]) < 1e-4, `position ${i}: best ${mine[0]} vs ${ref[0][1]}`);
    const own = ref.find(([id]) => id === score.tokens[i]);
    if (own) assert.ok(Math.abs(lp.token_logprobs[i] - own[1]) < 1e-4, `position ${i}: token logprob`);
  }
});

await check('embeddings', async () => {
  const r = await client.embeddings.create({ model: MODEL_NAME, input: ['a happy dog', 'a sad cat'] });
  assert.equal(r.data.length, 2);
  for (const d of r.data) {
    const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
  }
  const f = await client.embeddings.create({ model: MODEL_NAME, input: 'a happy dog', encoding_format: 'float' });
  assert.ok(f.data[0].embedding.every((x, i) => Math.abs(x - r.data[0].embedding[i]) < 1e-6));
});

await check('errors map to the SDK classes', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError);
  await assert.rejects(client.chat.completions.create({ model: MODEL_NAME, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError);
  const bad = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});

await check('abort mid-stream frees the slot', async () => {
  const ac = new AbortController();
  let chunks = 0;
  try {
    const s = await client.completions.create({ model: MODEL_NAME, prompt: 'Once', max_tokens: 4000, temperature: 1, stream: true },
      { signal: ac.signal });
    for await (const _ of s) {
      if (++chunks === 5) {
        ac.abort();
        break;
      }
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') throw e;
  }
  assert.equal(chunks, 5);
  let busy = -1;
  for (let i = 0; i < 100 && busy !== 0; i++) {
    busy = await busySlots();
    if (busy !== 0) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(busy, 0);
  const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Then', max_tokens: 4 });
  assert.equal(r.choices.length, 1);
});

await check(`load: ${LOAD_STREAMS} concurrent streams equal one-at-a-time`, async () => {
  const reqs = Array.from({ length: LOAD_STREAMS }, (_, i) => ({
    model: MODEL_NAME, prompt: `Once upon a time, ${['Lily', 'Tom', 'a cat', 'the sun'][i % 4]} ${i}`,
    max_tokens: LOAD_TOKENS, temperature: 0.8, seed: 1000 + i,
  }));
  const t0 = Date.now();
  const results = await Promise.allSettled(reqs.map((p) => streamText(p)));
  const errors = results.filter((r) => r.status === 'rejected');
  assert.equal(errors.length, 0, `errors: ${errors.map((e) => e.reason).join('; ')}`);
  const concurrent = results.map((r) => r.value);
  console.log(`     ${LOAD_STREAMS} streams in ${Date.now() - t0} ms`);
  for (const r of concurrent) assert.ok(r.finish !== null, 'a stream ended without finish_reason');
  for (let i = 0; i < LOAD_STREAMS; i++) {
    const alone = await streamText(reqs[i]);
    assert.equal(concurrent[i].text, alone.text, `request ${i} differs`);
  }
  let busy = -1;
  for (let i = 0; i < 40 && busy !== 0; i++) {
    busy = await busySlots();
    if (busy !== 0) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(busy, 0);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
