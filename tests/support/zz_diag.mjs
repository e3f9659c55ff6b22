import { launchBrowser } from './browser.mjs';
import { startServer } from './server.mjs';
const srv = await startServer({ port: 0, isolation: true, quiet: true });
const b = await launchBrowser();
for (const q of (process.argv[2] || 'build=threads&threads=1&suite=kernels,build=threads&threads=2&suite=kernels').split(',build').map((s, i) => (i ? 'build' + s : s))) {
  const p = await b.newPage();
  await p.goto(`${srv.url}www/bench.html?${q}`);
  await p.waitForFunction(() => window.benchResults, null, { timeout: 300000 });
  const r = await p.evaluate(() => window.benchResults);
  console.log(q, JSON.stringify({ peak: r.simd_peak_gflops?.toFixed(1), gemm: r.gemm_gflops && Object.fromEntries(Object.entries(r.gemm_gflops).map(([k, v]) => [k, v.toFixed(1)])), train: r.train?.samplesPerSec?.toFixed(0), inf: r.inference_us }));
  await p.close();
}
await b.close(); await srv.close();
