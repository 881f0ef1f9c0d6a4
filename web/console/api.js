// The console's session and API calls. The refresh token lives in an HttpOnly cookie this
// script cannot read (set by /api/v1/auth/web/*); the access token only in this module's
// memory, never in storage or the URL.

const CSRF = { "X-Fieldsync-Csrf": "1" };
let access = null;
let refreshing = null;
// Aborted at sign-out: a page's requests still in flight (the overview's trends) must not
// come back as 401s and try to refresh a session that has ended.
let inflight = new AbortController();

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function session(path, body) {
  const r = await fetch(`/api/v1/auth/web/${path}`, {
    method: "POST",
    headers: body ? { ...CSRF, "content-type": "application/json" } : CSRF,
    body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin",
  });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  access = data.access_token;
  // Only a hint that a cookie may be there (no token, nothing personal): a fresh page then
  // asks for a refresh, and a page that never signed in does not.
  localStorage.setItem("fieldsync.session", "1");
  return data;
}

export const signIn = (username, password) => session("login", { username, password });

/** Resumes the session from the cookie; null when there is none. */
export async function resume() {
  if (!localStorage.getItem("fieldsync.session")) return null;
  try {
    return await refresh();
  } catch (e) {
    if (e.status === 401) {
      localStorage.removeItem("fieldsync.session");
      return null;
    }
    throw e;
  }
}

function refresh() {
  // One refresh at a time: the cookie's token rotates at each use.
  if (!refreshing) refreshing = session("refresh").finally(() => (refreshing = null));
  return refreshing;
}

export async function signOut() {
  access = null;
  inflight.abort();
  inflight = new AbortController();
  localStorage.removeItem("fieldsync.session");
  await session("logout");
}

async function call(method, path, body, retried) {
  if (access === null) throw new ApiError(401, { code: "signed_out", message: "signed out" });
  const headers = { authorization: `Bearer ${access}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: inflight.signal,
  });
  if (r.status === 401 && !retried && access !== null) {
    await refresh();
    return call(method, path, body, true);
  }
  if (r.status === 204) return null;
  const ct = r.headers.get("content-type") || "";
  if (!ct.includes("json")) {
    if (!r.ok) throw new ApiError(r.status, null);
    return r.blob();
  }
  const data = await r.json();
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** `path` with the query parameters that are set. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const get = (path, params) => call("GET", withQuery(path, params));
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);
export const put = (path, body) => call("PUT", path, body);

/** Downloads a file answered by the API (exports) under `filename`. */
export async function download(path, params, filename) {
  const blob = await call("GET", withQuery(path, params));
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
