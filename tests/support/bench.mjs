// ./build.sh bench: runs www/bench.html in headless Chromium for each build and thread count,
// interleaved over several rounds, and writes medians to bench/results.json plus a printed table.
//
//   node tests/support/bench.mjs [--rounds 5] [--lm-rounds 1] [--only mlp|lm|llm] [--quality]
//   (--quality: also the language model's presets on the real corpora, ~15 minutes, into results.json)
//   (--only llm: part 3's SmolLM2 only — load, prefill, greedy decoding, seed LoRA training on 2 threads — written as the `llm`
//   object of the bench/results.json already there, the rest of it kept)
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { cpus } from 'node:os';
import { launchBrowser } from './browser.mjs';
import { startServer } from './server.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const only = flag('--only', null);
const rounds = only === 'lm' || only === 'llm' ? 0 : Number(flag('--rounds', 5)) || 5;
// The language model's runs take minutes a round: one round by default.
const lmRounds = only === 'mlp' || only === 'llm' ? 0 : Number(flag('--lm-rounds', 1)) || 1;
// Part 3's model: one page (a load and three greedy generations, about a minute).
const llmRounds = only === null || only === 'llm' ? 1 : 0;
const ROOT = new URL('../../', import.meta.url);

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function runPage(browser, url, timeout = 300_000) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  try {
    await page.goto(url);
    await page.waitForFunction(() => window.benchResults, null, { timeout, polling: 500 });
    const r = await page.evaluate(() => window.benchResults);
    if (r.error) throw new Error(`${url}: ${r.error}`);
    if (errors.length) throw new Error(`${url}: ${errors.join('; ')}`);
    return r;
  } finally {
    await context.close();
  }
}

const isolated = await startServer({ port: 0, isolation: true, quiet: true });
const plain = await startServer({ port: 0, isolation: false, quiet: true });
const browser = await launchBrowser();
const configs = [
  { key: 'threads_2', base: isolated.url, query: 'build=threads&threads=2' },
  { key: 'threads_1', base: isolated.url, query: 'build=threads&threads=1' },
  { key: 'simd_only', base: plain.url, query: 'build=simd&threads=1' },
  // 1 and 2 threads back to back in one page, which goes first alternating by round.
  { key: 'scaling', base: isolated.url, query: (r) => `build=threads&threads=2&suite=scaling&first=${r % 2 ? 2 : 1}` },
];
const lmConfigs = [
  { key: 'lm_threads_2', base: isolated.url, query: 'build=threads&threads=2&suite=lm,lmKernels' },
  { key: 'lm_threads_1', base: isolated.url, query: 'build=threads&threads=1&suite=lm&lmOnly=b32' },
];
const llmConfigs = [{ key: 'llm_threads_2', base: isolated.url, query: 'build=threads&threads=2&suite=llm,decodeKernels' }];
const samples = Object.fromEntries([...configs, ...lmConfigs, ...llmConfigs].map((c) => [c.key, []]));
let quality = null;
try {
  if (args.includes('--quality')) {
    quality = (await runPage(browser, `${isolated.url}www/bench.html?build=threads&threads=2&suite=lmQuality`, 3_600_000)).lm_quality;
    console.error(`lm quality: ${JSON.stringify(quality)}`);
  }
  for (let r = 0; r < llmRounds; r++) {
    for (const c of llmConfigs) {
      const res = await runPage(browser, `${c.base}www/bench.html?${c.query}`, 900_000);
      samples[c.key].push(res);
      const { text, ...numbers } = res.llm;
      console.error(`llm round ${r + 1}/${llmRounds} ${c.key}: ${JSON.stringify(numbers)}`);
    }
  }
  for (let r = 0; r < lmRounds; r++) {
    for (const c of lmConfigs) {
      const res = await runPage(browser, `${c.base}www/bench.html?${c.query}`, 1_800_000);
      samples[c.key].push(res);
      console.error(`lm round ${r + 1}/${lmRounds} ${c.key}: ${JSON.stringify(res.lm_tokens_per_sec)}`);
    }
  }
  for (let r = 0; r < rounds; r++) {
    for (const c of configs) {
      const query = typeof c.query === 'function' ? c.query(r) : c.query;
      const res = await runPage(browser, `${c.base}www/bench.html?${query}`);
      samples[c.key].push(res);
      const what = res.scaling
        ? `1 thread ${Math.round(res.scaling.threads_1)}, 2 threads ${Math.round(res.scaling.threads_n)} samples/s: ${res.scaling.ratio.toFixed(2)}×`
        : `${Math.round(res.train.samplesPerSec)} samples/s, forward ${res.gemm_gflops.forward.toFixed(1)} GFLOP/s`;
      console.error(`round ${r + 1}/${rounds} ${c.key}: ${what}`);
    }
  }
} finally {
  await browser.close();
  await isolated.close();
  await plain.close();
}

const pick = (key, f) => median(samples[key].map((s) => { try { return f(s); } catch { return NaN; } }));
const wasmFile = (dir) => new URL(`www/${dir}/lora_lab_bg.wasm`, ROOT);
const wasmBytes = (dir) => statSync(wasmFile(dir)).size;
const wasmGzip = (dir) => gzipSync(readFileSync(wasmFile(dir)), { level: 9 }).length;
const t2 = samples.threads_2;
/** The MLP GEMM's layouts: f32, and the two QLoRA computes with the weight in 4-bit NF4. */
const GEMM_LAYOUTS = ['forward', 'input_grad', 'weight_grad', 'forward_nf4', 'input_grad_nf4'];
const results = {
  date: new Date().toISOString(),
  machine: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
  browser: t2[0]?.userAgent ?? 'headless Chromium',
  rounds,
  train_samples_per_sec: {
    threads_2: pick('threads_2', (s) => s.train.samplesPerSec),
    threads_1: pick('threads_1', (s) => s.train.samplesPerSec),
    simd_only: pick('simd_only', (s) => s.train.samplesPerSec),
  },
  gemm_gflops: Object.fromEntries(GEMM_LAYOUTS.map((k) => [k, pick('threads_1', (s) => s.gemm_gflops[k])])),
  gemm_gflops_threads_2: Object.fromEntries(GEMM_LAYOUTS.map((k) => [k, pick('threads_2', (s) => s.gemm_gflops[k])])),
  gemm_gflops_simd_only: {
    forward: pick('simd_only', (s) => s.gemm_gflops.forward),
    input_grad: pick('simd_only', (s) => s.gemm_gflops.input_grad),
    weight_grad: pick('simd_only', (s) => s.gemm_gflops.weight_grad),
  },
  simd_peak_gflops: pick('threads_1', (s) => s.simd_peak_gflops),
  // The peak samples taken alongside the GEMMs (one before each GEMM sample), all layouts.
  simd_peak_gflops_alongside_gemms: median(samples.threads_1.flatMap((s) => Object.values(s.gemm_peak))),
  simd_peak_gflops_2_threads_together: pick('threads_2', (s) => s.simd_peak_all_threads_gflops),
  simd_peak_gflops_simd_only: pick('simd_only', (s) => s.simd_peak_gflops),
  inference_us: pick('threads_2', (s) => s.inference_us),
  inference_us_simd_only: pick('simd_only', (s) => s.inference_us),
  lm_tokens_per_sec: {
    base_b32: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.base_b32),
    base_b3: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.base_b3),
    lora_seed_b3: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.lora_seed_b3),
    lora_new_tokens_b3: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.lora_new_tokens_b3),
    lora_seed_b3_nf4: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.lora_seed_b3_nf4),
    lora_new_tokens_b3_nf4: pick('lm_threads_2', (s) => s.lm_tokens_per_sec.lora_new_tokens_b3_nf4),
    base_b32_1t: pick('lm_threads_1', (s) => s.lm_tokens_per_sec.base_b32),
  },
  lm_generate_tokens_per_sec: pick('lm_threads_2', (s) => s.lm_generate_tokens_per_sec),
  lm_gemm_gflops_threads_2: Object.fromEntries(
    Object.keys(samples.lm_threads_2[0]?.lm_gemm_gflops ?? {}).map((k) => [k, pick('lm_threads_2', (s) => s.lm_gemm_gflops[k])]),
  ),
  lm_gemm_of_peak_threads_2: Object.fromEntries(
    Object.keys(samples.lm_threads_2[0]?.lm_gemm_of_peak ?? {}).map((k) => [k, pick('lm_threads_2', (s) => s.lm_gemm_of_peak[k])]),
  ),
  lm_quality: quality,
  wasm_bytes: { threads: wasmBytes('pkg-threads'), simd_only: wasmBytes('pkg-simd') },
  wasm_gzip_bytes: { threads: wasmGzip('pkg-threads'), simd_only: wasmGzip('pkg-simd') },
};
results.train_samples_per_sec_paired = {
  threads_2: pick('scaling', (s) => s.scaling.threads_n),
  threads_1: pick('scaling', (s) => s.scaling.threads_1),
};
results.ratios = {
  // The median of the ratios of epochs run back to back in one page.
  threads_2_over_threads_1: pick('scaling', (s) => s.scaling.ratio),
  // The ratio of the medians of the pages above, which run about a minute apart.
  threads_2_over_threads_1_separate_pages: results.train_samples_per_sec.threads_2 / results.train_samples_per_sec.threads_1,
  // Each GEMM sample against the peak loop run just before it (see the worker's bench).
  gemm_over_peak: Object.fromEntries(GEMM_LAYOUTS.map((k) => [k, pick('threads_1', (s) => s.gemm_of_peak[k])])),
  // The 4-bit GEMMs against the f32 ones of the same pages (target ≥ 0.8): MLP layer 1 on 1 thread, and
  // the language model's shapes on 2.
  nf4_over_f32: {
    mlp_layer1_forward: pick('threads_1', (s) => s.gemm_gflops.forward_nf4 / s.gemm_gflops.forward),
    mlp_layer1_input_grad: pick('threads_1', (s) => s.gemm_gflops.input_grad_nf4 / s.gemm_gflops.input_grad),
    ...Object.fromEntries(['lm_attn', 'lm_up', 'lm_down', 'lm_head'].flatMap((shape) => ['forward', 'input_grad'].map((l) => [
      `${shape}_${l}`, pick('lm_threads_2', (s) => s.lm_gemm_gflops[`${shape}.${l}_nf4`] / s.lm_gemm_gflops[`${shape}.${l}`]),
    ]))),
  },
};
// Part 3: SmolLM2-135M-Instruct on 2 threads (www/bench.js, suite llm).
const llm = samples.llm_threads_2.at(-1)?.llm;
results.llm = llm
  ? {
      date: results.date,
      threads: 2,
      model: llm.model,
      load_seconds: pick('llm_threads_2', (s) => s.llm.load_seconds),
      prefill_tokens_per_s: pick('llm_threads_2', (s) => s.llm.prefill_tokens_per_s),
      generate_tokens_per_s: pick('llm_threads_2', (s) => s.llm.generate_tokens_per_s),
      generate_int8_tokens_per_s: pick('llm_threads_2', (s) => s.llm.generate_int8_tokens_per_s),
      // Decoding's one-row products at SmolLM2's shapes, exact and with 8-bit activations (GFLOP/s).
      decode_gemv_gflops: samples.llm_threads_2.at(-1)?.decode_gemv_gflops,
      lora_seed_b3_t256_tokens_per_s: pick('llm_threads_2', (s) => s.llm.lora_seed_b3_t256_tokens_per_s),
      lora_seed_b3_t256_gflops: pick('llm_threads_2', (s) => s.llm.lora_seed_b3_t256_gflops),
      lora_seed_nf4_b3_t256_tokens_per_s: pick('llm_threads_2', (s) => s.llm.lora_seed_nf4_b3_t256_tokens_per_s),
      prompt_tokens: llm.prompt_tokens,
      new_tokens: llm.new_tokens,
      finish: llm.finish,
      reps: llm.reps,
      text: llm.text,
      int8_new_tokens: llm.int8_new_tokens,
      int8_text: llm.int8_text,
    }
  : null;
mkdirSync(new URL('bench/', ROOT), { recursive: true });
const resultsFile = new URL('bench/results.json', ROOT);
if (only === 'llm') {
  // Only the llm object is measured: the rest of the file stays as the last runs left it.
  let kept = {};
  try {
    kept = JSON.parse(readFileSync(resultsFile, 'utf8'));
  } catch {
    kept = {};
  }
  writeFileSync(resultsFile, JSON.stringify({ ...kept, llm: results.llm }, null, 2) + '\n');
} else {
  writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
}

const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const rows = [
  ['train samples/s, threaded, 2 threads', f(results.train_samples_per_sec.threads_2)],
  ['train samples/s, threaded, 1 thread', f(results.train_samples_per_sec.threads_1)],
  ['train samples/s, SIMD-only', f(results.train_samples_per_sec.simd_only)],
  ['2 threads / 1 thread, epochs back to back in one page (their samples/s)', `${f(results.ratios.threads_2_over_threads_1, 2)} (${f(results.train_samples_per_sec_paired.threads_2)} / ${f(results.train_samples_per_sec_paired.threads_1)})`],
  ['2 threads / 1 thread, medians of the separate pages above', f(results.ratios.threads_2_over_threads_1_separate_pages, 2)],
  ['SIMD peak GFLOP/s per thread (relaxed madd): alone / alongside the GEMMs', `${f(results.simd_peak_gflops, 1)} / ${f(results.simd_peak_gflops_alongside_gemms, 1)}`],
  ['SIMD peak GFLOP/s, 2 threads at once (sum)', f(results.simd_peak_gflops_2_threads_together, 1)],
  ['SIMD peak GFLOP/s, SIMD-only (mul+add)', f(results.simd_peak_gflops_simd_only, 1)],
  ...GEMM_LAYOUTS.map((k) => [
    `GEMM ${k} 64×784×512 GFLOP/s, 1 thread (of peak alongside) / 2 threads`,
    `${f(results.gemm_gflops[k], 1)} (${f(100 * results.ratios.gemm_over_peak[k])} %) / ${f(results.gemm_gflops_threads_2[k], 1)}`,
  ]),
  ['LM train tokens/s, 2 threads: base b32 / base b3 / LoRA seed b3 / LoRA new-tokens b3',
    ['base_b32', 'base_b3', 'lora_seed_b3', 'lora_new_tokens_b3'].map((k) => f(results.lm_tokens_per_sec[k])).join(' / ')],
  ['LM train tokens/s, base b32, 1 thread', f(results.lm_tokens_per_sec.base_b32_1t)],
  ['LM QLoRA tokens/s (4-bit base), 2 threads: LoRA seed b3 / LoRA new-tokens b3',
    ['lora_seed_b3_nf4', 'lora_new_tokens_b3_nf4'].map((k) => f(results.lm_tokens_per_sec[k])).join(' / ')],
  ...Object.entries(results.ratios.nf4_over_f32).map(([k, v]) => [`NF4 GEMM / f32 GEMM, ${k} (same pages)`, f(v, 2)]),
  ['LM generation tokens/s (20 samples, KV cache), 2 threads', f(results.lm_generate_tokens_per_sec)],
  ...Object.entries(results.lm_gemm_gflops_threads_2).map(([k, v]) => [
    `LM GEMM ${k} GFLOP/s, 2 threads (of the 1-thread peak alongside)`, `${f(v, 1)} (${f(100 * results.lm_gemm_of_peak_threads_2[k])} %)`,
  ]),
  ['SmolLM2-135M-Instruct, 2 threads: load s (fetch to ready) / prefill tokens/s / greedy decoding tokens/s',
    [f(results.llm?.load_seconds, 2), f(results.llm?.prefill_tokens_per_s, 1), f(results.llm?.generate_tokens_per_s, 1)].join(' / ')],
  ['SmolLM2 decoding with 8-bit activations: tokens/s, 2 threads', f(results.llm?.generate_int8_tokens_per_s, 1)],
  ['SmolLM2 seed LoRA training, batch 3 × 256, loss on every token, checkpointing, 2 threads: tokens/s (GFLOP/s)',
    `${f(results.llm?.lora_seed_b3_t256_tokens_per_s, 1)} (${f(results.llm?.lora_seed_b3_t256_gflops, 1)})`],
  ['The same over the NF4 base (QLoRA, double quantisation): tokens/s', f(results.llm?.lora_seed_nf4_b3_t256_tokens_per_s, 1)],
  ['inference µs per digit (threads / SIMD-only)', `${f(results.inference_us, 1)} / ${f(results.inference_us_simd_only, 1)}`],
  ['wasm bytes threads / SIMD-only', `${results.wasm_bytes.threads} / ${results.wasm_bytes.simd_only}`],
  ['wasm gzip bytes threads / SIMD-only', `${results.wasm_gzip_bytes.threads} / ${results.wasm_gzip_bytes.simd_only}`],
];
// A partial run (--only) prints only what it measured.
const shown = only === null ? rows : rows.filter(([, v]) => !/^[n/a ()%]*$/.test(v));
const w = Math.max(...shown.map((r) => r[0].length));
const table = [`| ${'measure'.padEnd(w)} | value |`, `|${'-'.repeat(w + 2)}|-------|`, ...shown.map(([k, v]) => `| ${k.padEnd(w)} | ${v} |`)].join('\n');
const heading = `${results.date.slice(0, 10)} — ${results.machine} — headless ${results.browser.match(/Chrome\/[\d.]+/)?.[0] ?? 'Chromium'} — medians of ${rounds} interleaved rounds`;
// A partial run (--only) prints its table and writes results.json, but leaves BENCHMARKS.md alone: its
// table would replace the full one with n/a rows.
const partial = only !== null;
console.log(`\nLoRA Lab benchmarks — ${heading}\n\n${table}\n\nwritten to bench/results.json${partial ? ' (--only: BENCHMARKS.md left as it is)' : ' and BENCHMARKS.md'}`);
// The hand-written profile below the table (from "## Where the time goes" on) is kept as it is.
const mdFile = new URL('BENCHMARKS.md', ROOT);
if (partial) process.exit(0);
let kept = '';
try {
  const old = readFileSync(mdFile, 'utf8');
  const at = old.indexOf('\n## Where the time goes');
  if (at >= 0) kept = old.slice(at);
} catch {
  kept = '';
}
writeFileSync(
  mdFile,
  `# Benchmarks\n\nWritten by \`./build.sh bench\` (tests/support/bench.mjs): www/bench.html in headless Chromium, each build\n` +
    `and thread count in turn, interleaved over ${rounds} rounds; medians. Training: 1 epoch of the 48,200 digits 0–7,\n` +
    `batch 64, Adam, after a warm-up run (V8 optimises wasm only once it has run hot). GEMMs: layer 1's shapes at\n` +
    `batch 64 (64×784×512), dense (in training, layer 1 uses variants that skip blank pixels: see below). The\n` +
    `SIMD peak is a register-only loop of the multiply-add the kernels use; a GEMM's share of it compares each GEMM\n` +
    `sample with a peak sample taken just before it, and the 2-thread gain compares epochs run back to back in\n` +
    `one page, because this shared machine's speed changes by a third from one moment to the next.\n` +
    `These machines are shared and noisy: compare figures from one run only.\n\n## ${heading}\n\n${table}\n\n` +
    `Reading it: two threads running the peak loop together reach ${f(results.simd_peak_gflops_2_threads_together / results.simd_peak_gflops, 2)}× ` +
    `one thread's SIMD throughput on this machine, which bounds what the second thread can add; training gains ` +
    `${f(results.ratios.threads_2_over_threads_1, 2)}×. Peers measured on this kind of machine (../shared/TOOLCHAIN.md): native ` +
    `PyTorch 13,500 samples/s on 2 threads (11,800 on 1), TensorFlow.js wasm 754 in the same browser.\n` +
    kept,
);
