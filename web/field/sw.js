// The field app's service worker: keeps the app shell (pages, scripts, the client library) so
// the app opens after a reload with no network. Data never passes through here: the API is
// not cached (the records live in IndexedDB, written by the client). Change VERSION when the
// shell's list changes; a changed file is picked up by the network refresh below.

const VERSION = 'field-shell-1';
const SHELL = [
  '/field/',
  '/field/app.js',
  '/field/app.css',
  '/field/schema.js',
  '/field/checks.js',
  '/field/manifest.webmanifest',
  '/field/icon.svg',
  '/field/icon-192.png',
  '/client/index.js',
  '/client/engine.js',
  '/client/core.js',
  '/client/idbstore.js',
  '/client/memstore.js',
  '/client/http.js',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      .then((c) => c.addAll(SHELL.map((u) => new Request(u, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  // Every page of the app is the one shell; the hash picks the screen.
  const key = req.mode === 'navigate' && url.pathname.startsWith('/field/') ? '/field/' : url.pathname;
  if (!SHELL.includes(key)) return;
  event.respondWith(
    caches.open(VERSION).then(async (cache) => {
      const cached = await cache.match(key);
      // Stale while revalidate: the cached shell answers at once, the network refreshes it.
      const fresh = fetch(key, { cache: 'no-store' })
        .then((res) => {
          if (res.ok) cache.put(key, res.clone());
          return res;
        })
        .catch(() => null);
      if (cached) {
        event.waitUntil(fresh);
        return cached;
      }
      return (await fresh) || new Response('离线，且尚未缓存', { status: 503, headers: { 'Content-Type': 'text/plain; charset=utf-8' } });
    }),
  );
});
