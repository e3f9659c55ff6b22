// Benchmark page for ./build.sh bench: starts the worker with the build and thread count of the query
// string, runs the benchmarks the query asks for, and leaves the results in window.benchResults.
import { Request, WorkerClient } from './protocol.js';

const q = new URLSearchParams(location.search);
const build = q.get('build') === 'simd' ? 'simd' : 'threads';
const threads = Number(q.get('threads') || navigator.hardwareConcurrency || 1);
const suite = (q.get('suite') || 'kernels,train,inference').split(',');
const out = document.getElementById('out');

async function main() {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const client = new WorkerClient(worker);
  const results = { build, threads };
  results.info = await client.request(Request.INIT, { build, threads });
  results.userAgent = navigator.userAgent;
  const bench = (args) => client.request(Request.BENCH, args);
  if (suite.includes('kernels')) {
    results.gemm_gflops = {};
    results.gemm_of_peak = {};
    results.gemm_peak = {};
    // A first pass, not kept: the page has just loaded and V8 is still compiling in the background.
    for (const layout of ['forward', 'input_grad', 'weight_grad']) await bench({ kind: 'gemm', layout, reps: 20 });
    // With the weight in 4-bit NF4 (QLoRA's frozen base): the forward and the input gradient, in the same
    // sitting as the f32 layouts they are compared with.
    for (const layout of ['forward', 'input_grad', 'weight_grad', 'forward_nf4', 'input_grad_nf4']) {
      const r = await bench({ kind: 'gemm', layout, reps: 20 });
      results.gemm_gflops[layout] = r.gflops;
      results.gemm_of_peak[layout] = r.ofPeak;
      results.gemm_peak[layout] = r.peak;
    }
    // After the GEMMs: measured first, right after the page loaded, the loop read ~30 % below the
    // same loop between GEMM samples. 20 M rounds ≈ 2 GFLOP: long enough (~50 ms) that a scheduler hiccup
    // does not decide the figure.
    results.simd_peak_gflops = (await bench({ kind: 'peak', iters: 20_000_000 })).gflops;
    if (build === 'threads') results.simd_peak_all_threads_gflops = (await bench({ kind: 'peakAllThreads', iters: 20_000_000 })).gflops;
  }
  if (suite.includes('train')) {
    const limit = q.get('limit') ? Number(q.get('limit')) : undefined;
    results.train = await bench({ kind: 'train', limit });
  }
  if (suite.includes('scaling')) {
    // One epoch on 1 thread and one on `threads`, back to back in this page (which runs first: the
    // query's `first`): a ratio measured at one moment, where pages run a minute apart can land on
    // different speeds of this shared machine.
    const single = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    const one = new WorkerClient(single);
    await one.request(Request.INIT, { build, threads: 1 });
    const run = { 1: () => one.request(Request.BENCH, { kind: 'train' }), n: () => bench({ kind: 'train' }) };
    const order = q.get('first') === '1' ? ['1', 'n'] : ['n', '1'];
    const sps = {};
    for (const t of order) sps[t] = (await run[t]()).samplesPerSec;
    single.terminate();
    results.scaling = { threads_1: sps['1'], threads_n: sps.n, ratio: sps.n / sps['1'] };
  }
  if (suite.includes('determinism')) {
    // The same seed on any thread count must give the same losses, bit for bit.
    results.determinism = await client.request(Request.TRAIN_BASE, { seed: 7, epochs: 1, limit: 2000 });
  }
  if (suite.includes('lmDeterminism')) {
    // The same seed on any thread count: the same language-model losses, bit for bit.
    results.lmDeterminism = await client.request(Request.LM_TRAIN_BASE, { limit: 600, batchSize: 8, seed: 7 });
  }
  if (suite.includes('lmKernels')) {
    // The language model's GEMMs at 32 sequences of 64 tokens, each against the peak loop.
    results.lm_gemm_gflops = {};
    results.lm_gemm_of_peak = {};
    const shapes = ['lm_attn', 'lm_up', 'lm_down', 'lm_head'];
    for (const shape of q.get('lmShapes') === 'b3' ? shapes.map((s) => `${s}_b3`).concat('lm_qkv_b3') : shapes) {
      for (const layout of ['forward', 'forward_dot', 'input_grad', 'weight_grad', 'forward_nf4', 'input_grad_nf4']) {
        const r = await bench({ kind: 'gemm', shape, layout, reps: 4 });
        results.lm_gemm_gflops[`${shape}.${layout}`] = r.gflops;
        results.lm_gemm_of_peak[`${shape}.${layout}`] = r.ofPeak;
      }
    }
  }
  if (suite.includes('decodeKernels')) {
    // Decoding's matrix-vector products at SmolLM2's shapes, exact and with 8-bit activations.
    results.decode_gemv_gflops = {};
    for (const [shape, type] of [['smol_up_m1', 'q4_1'], ['smol_kv_m1', 'q4_1'], ['smol_head_m1', 'q8_0']]) {
      for (const layout of [`forward_${type}`, `forward_${type}_int8`]) {
        results.decode_gemv_gflops[`${shape}.${layout}`] = (await bench({ kind: 'gemm', shape, layout, reps: shape === 'smol_head_m1' ? 4 : 200 })).gflops;
      }
    }
  }
  if (suite.includes('lm')) {
    // Tokens/s of the design note's runs: a warm-up, then the base at 32 and at 3 sequences per batch,
    // and the two adapter presets at 3 (one epoch of Pokémon names each).
    const lm = (type, args) => client.request(type, args);
    const words = Number(q.get('lmWords') || 20000);
    await lm(Request.LM_TRAIN_BASE, { limit: 2000 });
    const tps = {};
    if (!q.get('lmOnly') || q.get('lmOnly') === 'b32') tps.base_b32 = (await lm(Request.LM_TRAIN_BASE, { limit: words })).tokensPerSec;
    // lmOnly=b3: the runs at 3 sequences per batch only (a quick look at the adapter's speed).
    if (!q.get('lmOnly') || q.get('lmOnly') === 'b3') {
      tps.base_b3 = (await lm(Request.LM_TRAIN_BASE, { limit: Math.round(words / 8), batchSize: 3 })).tokensPerSec;
      tps.lora_seed_b3 = (await lm(Request.LM_TRAIN_ADAPTER, { preset: 'seed', epochs: 1 })).tokensPerSec;
    }
    if (!q.get('lmOnly')) {
      tps.lora_new_tokens_b3 = (await lm(Request.LM_TRAIN_ADAPTER, { preset: 'new-tokens', epochs: 1 })).tokensPerSec;
      // QLoRA: the same two presets on the base held in 4 bits.
      await lm(Request.LM_QUANTIZE_BASE, { type: 'nf4', doubleQuant: true });
      tps.lora_seed_b3_nf4 = (await lm(Request.LM_TRAIN_ADAPTER, { preset: 'seed', epochs: 1 })).tokensPerSec;
      tps.lora_new_tokens_b3_nf4 = (await lm(Request.LM_TRAIN_ADAPTER, { preset: 'new-tokens', epochs: 1 })).tokensPerSec;
      await lm(Request.LM_DEQUANTIZE_BASE);
      // Sampling: 20 sequences of at most 63 bytes with the cache, timed here; tokens = bytes + EOS.
      const t0 = performance.now();
      const samples = await lm(Request.LM_GENERATE, { n: 20, temperature: 0.8, seed: 1 });
      const s = (performance.now() - t0) / 1000;
      results.lm_generate_tokens_per_sec = samples.reduce((n, x) => n + new TextEncoder().encode(x).length + 1, 0) / s;
    }
    results.lm_tokens_per_sec = tps;
  }
  if (suite.includes('lmQuality')) {
    // The design note's presets on the real corpora: the base for one epoch of the English words, then
    // the article's adapter and new-tokens on Pokémon names; held-out losses and 20 samples each.
    const lm = (type, args) => client.request(type, args);
    const base = await lm(Request.LM_TRAIN_BASE, {});
    const before = await lm(Request.LM_EVALUATE);
    const capitals = (xs) => xs.filter((x) => /^[A-Z]/.test(x)).length;
    const seed = await lm(Request.LM_TRAIN_ADAPTER, { preset: 'seed' });
    const seedSamples = await lm(Request.LM_GENERATE, { n: 20, temperature: 0.8, seed: 1 });
    const news = await lm(Request.LM_TRAIN_ADAPTER, { preset: 'new-tokens' });
    const newSamples = await lm(Request.LM_GENERATE, { n: 20, temperature: 0.8, seed: 1 });
    const baseSamples = await lm(Request.LM_GENERATE, { n: 20, temperature: 0.8, seed: 1, adapted: false });
    // QLoRA: the same base held in 4 bits (NF4, double quantisation), and new-tokens trained on top.
    await lm(Request.LM_QUANTIZE_BASE, { type: 'nf4', doubleQuant: true });
    const before4 = await lm(Request.LM_EVALUATE);
    const news4 = await lm(Request.LM_TRAIN_ADAPTER, { preset: 'new-tokens', name: 'new-tokens-4bit' });
    const new4Samples = await lm(Request.LM_GENERATE, { n: 20, temperature: 0.8, seed: 1 });
    results.lm_quality = {
      base: { evalLoss: base.evalLoss, seconds: base.seconds, tokensPerSec: base.tokensPerSec, pokemon: before.base.pokemon, samples: baseSamples },
      seed: { evalLoss: seed.evalLoss, capitals: capitals(seedSamples), samples: seedSamples },
      newTokens: { evalLoss: news.evalLoss, capitals: capitals(newSamples), samples: newSamples },
      qlora: {
        base: before4.base,
        newTokens: { evalLoss: news4.evalLoss, capitals: capitals(new4Samples), samples: new4Samples },
      },
    };
  }
  if (suite.includes('llm')) {
    // Part 3: SmolLM2-135M-Instruct from the page's own file. Load: the fetch to a model ready to use.
    // Then greedy generation of up to 128 new tokens after a ~40-token chat prompt (the template adds its
    // default system prompt), after a short warm-up (V8 tiers the kernels up); medians of `llmReps` runs.
    // The lab stops at EOS: new_tokens says how many were made.
    const t0 = performance.now();
    const info = await client.request(Request.LLM_LOAD, { builtin: 'SmolLM2-135M-Instruct' });
    const loadSeconds = (performance.now() - t0) / 1000;
    const messages = [{ role: 'user', content: 'Write a short story about a robot who learns to paint.' }];
    await client.request(Request.LLM_GENERATE, { messages, maxNewTokens: 16 });
    const runs = [];
    for (let i = 0; i < Number(q.get('llmReps') || 3); i++) {
      runs.push(await client.request(Request.LLM_GENERATE, { messages, maxNewTokens: 128 }));
    }
    const med = (f) => median(runs.map(f));
    // The same with 8-bit activations (llama.cpp's arithmetic, `activations: 'int8'`).
    await client.request(Request.LLM_GENERATE, { messages, maxNewTokens: 16, activations: 'int8' });
    const runs8 = [];
    for (let i = 0; i < Number(q.get('llmReps') || 3); i++) {
      runs8.push(await client.request(Request.LLM_GENERATE, { messages, maxNewTokens: 128, activations: 'int8' }));
    }
    // Fine-tuning speed: the seed adapter (r 32, α 32, dropout 0.05 on q/k/v) over the GGUF's blocks, batch
    // 3 × 256 tokens with the loss on every token (text rows cut to max_seq_length 256), checkpointing on —
    // bench_smol_torch.py's setting. 4 steps after the held-out loss before (one short row); trained tokens
    // per second of the steps alone. A trained token costs ~0.75 GFLOP here: the layers' Linears (106.2 M
    // weights) forward, again when recomputed, and backward to their inputs, 2 FLOP per weight each, plus
    // the tied output layer (28.3 M) forward and backward.
    const vocabulary = 'the of and to in is was for on with as by at from that this which it are be an or have has not but'.split(' ');
    let seed = 7;
    const word = () => vocabulary[(seed = (seed * 1103515245 + 12345) % 2147483648) % vocabulary.length];
    const textRow = () => JSON.stringify({ text: Array.from({ length: 400 }, word).join(' ') });
    const jsonl = Array.from({ length: 12 }, textRow).join('\n');
    const seedRun = () => client.request(Request.LLM_TRAIN_ADAPTER, {
      preset: 'seed', name: 'bench', data: { jsonl, testJsonl: JSON.stringify({ text: 'a short held-out row' }) }, epochs: 1, maxSeqLength: 256,
    });
    const train = await seedRun();
    // The same over the NF4 base (QLoRA: the 210 projections quantised from the file's blocks, double
    // quantisation), then the base as read again.
    await client.request(Request.LLM_QUANTIZE_BASE, { type: 'nf4', doubleQuant: true });
    const trainNf4 = await seedRun();
    await client.request(Request.LLM_DEQUANTIZE_BASE);
    const flopsPerToken = 2 * 3 * 106.2e6 + 2 * 2 * 28.3e6;
    results.llm = {
      model: info.name,
      lora_seed_b3_t256_tokens_per_s: train.tokensPerSec,
      lora_seed_b3_t256_gflops: (train.tokensPerSec * flopsPerToken) / 1e9,
      lora_seed_nf4_b3_t256_tokens_per_s: trainNf4.tokensPerSec,
      lora_seed_steps: train.steps,
      load_seconds: loadSeconds,
      prompt_tokens: runs[0].promptTokens,
      new_tokens: runs[0].ids.length,
      finish: runs[0].finish,
      prefill_tokens_per_s: med((r) => r.prefillTokensPerSec),
      generate_tokens_per_s: med((r) => r.tokensPerSec),
      generate_int8_tokens_per_s: median(runs8.map((r) => r.tokensPerSec)),
      int8_new_tokens: runs8[0].ids.length,
      int8_text: runs8[0].text,
      seconds: med((r) => r.seconds),
      reps: runs.length,
      text: runs[0].text,
    };
  }
  if (suite.includes('inference')) {
    results.inference_us = (await bench({ kind: 'inference' })).us;
  }
  out.textContent = JSON.stringify(results, null, 2);
  window.benchResults = results;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

main().catch((e) => {
  out.textContent = `error: ${e.message}`;
  window.benchResults = { error: e.message };
});
