// The optional service worker for static hosts that cannot send headers (GitHub Pages and the like).
//
// The threaded build needs SharedArrayBuffer, which browsers give only to cross-origin isolated pages:
// pages served with COOP `same-origin` and COEP `require-corp`. This worker answers every same-origin
// request from the network as usual and adds those two headers (and CORP for the subresources), so
// once it controls the page — after one reload — the page is isolated and runs on all cores.
//
// It must sit next to index.html to control it (a worker controls only its own folder and below),
// so `./build.sh build` copies this file to the site root as `sw.js`. The page registers it only when
// the user asks (the "Turn threads on" button), and can remove it again. It caches nothing.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (new URL(request.url).origin !== self.location.origin) return; // the page fetches nothing else
  // A request the browser wants from the cache only cannot be re-fetched from here.
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  event.respondWith(isolated(request));
});

async function isolated(request) {
  const response = await fetch(request);
  // Opaque and error responses carry no headers to add to.
  if (response.type === 'opaque' || response.type === 'opaqueredirect' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
