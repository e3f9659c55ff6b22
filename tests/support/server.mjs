// The development and test server: static files from the repository root (only index.html, sw.js and
// www/), bound to 127.0.0.1, with the headers the threaded build needs.
//
//   node tests/support/server.mjs [--port 8000] [--no-isolation]
//
// With isolation (the default) every response carries COOP/COEP, so the page is cross-origin isolated
// and SharedArrayBuffer exists; --no-isolation drops both, and the page falls back to the SIMD-only build.
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.gz': 'application/gzip',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

// Nothing leaves the origin; wasm compilation is the only "eval" allowed.
export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

function resolvePath(urlPath) {
  let p = decodeURIComponent(urlPath.split('?')[0]);
  if (p === '/' || p === '') p = '/index.html';
  const rel = normalize(p).replace(/^([/\\])+/, '');
  if (!(rel === 'index.html' || rel === 'sw.js' || rel.startsWith(`www${sep}`))) return null;
  const full = join(ROOT, rel);
  if (!full.startsWith(ROOT + sep)) return null;
  return full;
}

export function startServer({ port = 8000, isolation = true, quiet = false } = {}) {
  const server = createServer((req, res) => {
    const headers = {
      'Content-Security-Policy': CSP,
      'Cross-Origin-Resource-Policy': 'same-origin',
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    };
    if (isolation) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    let file;
    try {
      file = resolvePath(req.url || '/');
    } catch {
      file = null;
    }
    let stat = null;
    try {
      stat = file && statSync(file);
    } catch {
      stat = null;
    }
    if (!file || !stat || !stat.isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return;
    }
    headers['Content-Type'] = MIME[extname(file)] || 'application/octet-stream';
    headers['Content-Length'] = stat.size;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((resolveStart, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}/`;
      if (!quiet) {
        console.log(`LoRA Lab at ${url} (${isolation ? 'cross-origin isolated: threaded build' : 'no isolation: SIMD-only build'}); Ctrl-C stops`);
      }
      resolveStart({ server, url, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let port = 8000;
  let isolation = true;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--no-isolation') isolation = false;
    else {
      console.error(`unknown argument: ${args[i]}`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('--port needs a number from 0 to 65535');
    process.exit(2);
  }
  const { server } = await startServer({ port, isolation }).catch((e) => {
    console.error(`cannot listen on 127.0.0.1:${port}: ${e.message}`);
    process.exit(1);
  });
  const stop = () => {
    console.log('\nstopping');
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
