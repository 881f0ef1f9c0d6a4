// The transport over fetch, same origin. It answers every HTTP status as data and rejects only
// when no answer arrived, which the engine treats as offline.

/** @typedef {import('./engine.js').Transport} Transport */

/**
 * @param {string} [base]  the server's origin; '' for the page's own
 * @returns {Transport}
 */
export function fetchTransport(base = '') {
  return async (method, path, body, token) => {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: res.status, body: parsed, retryAfter: res.headers.get('Retry-After') };
  };
}
