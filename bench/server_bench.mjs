// bench/server_bench.mjs: load generator for `slmesh serve` (and any OpenAI-compatible
// server): C clients each send streaming /v1/completions requests one after another (a
// ~40-word support-ticket prompt plus the request number, max_tokens 64, temperature 0, as
// the llama-server figures in ../shared/bench/README.md), and report generated tokens per
// second across all streams and the p50/p99 time to first token. No dependencies (Node's
// fetch). Usage: node bench/server_bench.mjs BASE_URL CLIENTS REQUESTS_PER_CLIENT [MODEL]
// Prints one JSON line. Not a test: bench/server_bench.sh runs it at 1, 4 and 16 clients.
const [base, clientsArg, perClientArg, model] = process.argv.slice(2);
const clients = Number(clientsArg ?? 1), perClient = Number(perClientArg ?? 4);
const TICKET = 'Hello, I was charged twice for my subscription this month and the second payment ' +
  'still shows as pending on my card. I already tried to cancel the duplicate from the billing page ' +
  'but it gives an error. Can you refund it and tell me what went wrong? Request';
const MAX_TOKENS = 64;

async function one(i) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: `${TICKET} ${i}.`, max_tokens: MAX_TOKENS, temperature: 0, stream: true,
      stream_options: { include_usage: true } }),
  });
  if (!r.ok) throw new Error(`status ${r.status}`);
  let ttft = null, tokens = 0, buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const o = JSON.parse(ev.slice(6));
      if (o.usage) tokens = o.usage.completion_tokens;
      else if (ttft === null && o.choices?.[0]?.text) ttft = performance.now() - t0;
    }
  }
  return { ttft: ttft ?? performance.now() - t0, tokens };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

const t0 = performance.now();
const results = [];
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let k = 0; k < perClient; k++) results.push(await one(c * perClient + k));
}));
const secs = (performance.now() - t0) / 1e3;
const tokens = results.reduce((s, r) => s + r.tokens, 0);
const ttfts = results.map((r) => r.ttft);
console.log(JSON.stringify({ clients, requests: results.length, tokens, seconds: +secs.toFixed(2),
  tok_per_s: +(tokens / secs).toFixed(1), ttft_p50_ms: Math.round(pct(ttfts, 50)), ttft_p99_ms: Math.round(pct(ttfts, 99)) }));
