// The sync engine: the pure plans of core.js run against a store adapter (IndexedDB in the
// browser, memory in tests) and a transport (fetch). Every step is committed to the store
// before the next network call, so closing the tab at any point loses nothing: a batch sent
// and not answered is recorded as in flight and resent unchanged on the next sync.

import {
  backoffSeconds,
  classifyFailure,
  freshMeta,
  planBatch,
  planChange,
  planPage,
  planPushAnswer,
  planSplit,
  repointUnsent,
  view,
  wireOp,
} from './core.js';

/**
 * @typedef {import('./core.js').Op} Op
 * @typedef {import('./core.js').Meta} Meta
 * @typedef {import('./core.js').Changes} Changes
 * @typedef {import('./core.js').ServerRecord} ServerRecord
 * @typedef {import('./core.js').ConflictOut} ConflictOut
 * @typedef {import('./core.js').EntityName} EntityName
 *
 * @typedef {object} Auth
 * @property {string} access_token
 * @property {string} refresh_token
 * @property {string} device_id
 * @property {{id: string, username: string, role: string, org_unit: string|null}} user
 *
 * @typedef {Meta & {auth: Auth|null, revoked: boolean}} DeviceMeta
 *
 * @typedef {object} State
 * @property {DeviceMeta} meta
 * @property {Op[]} ops
 * @property {ServerRecord[]} records
 * @property {ConflictOut[]} conflicts
 *
 * @typedef {object} Store  Durable state; `commit` writes all of its changes or none.
 * @property {() => Promise<State>} load
 * @property {(changes: Changes & {meta?: Partial<DeviceMeta>}) => Promise<void>} commit
 * @property {() => Promise<void>} wipe
 *
 * @typedef {object} Answer
 * @property {number} status
 * @property {any} body
 * @property {string|null} retryAfter
 *
 * @typedef {(method: 'GET'|'POST', path: string, body: unknown, token: string|null) => Promise<Answer>} Transport
 *   sends JSON; rejects only when no answer arrived (offline, connection cut)
 *
 * @typedef {object} SyncSummary
 * @property {number} sent        ops sent (resends included)
 * @property {number} applied     acknowledged as applied, duplicate or redirected
 * @property {number} review      acknowledged with a conflict left open for a supervisor
 * @property {number} flagged     acknowledged with a logic check flagged for the supervisor
 * @property {{seq: number, entity: string, id: string, code: string, message: string}[]} rejected
 * @property {number} pages       pull pages applied
 * @property {boolean} reset      the server asked for a fresh snapshot
 *
 * @typedef {{phase: 'push'|'pull', sent: number, pending: number, pages: number}} Progress
 */

/** Why a sync or sign-in stopped. `code` is stable: the app shows a message for each. */
export class SyncError extends Error {
  /**
   * @param {'offline'|'revoked'|'signed_out'|'busy'|'gap'|'unsent_ops'|'other_user'|'http'} code
   * @param {string} message
   * @param {Record<string, unknown>} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
}

/** How many whole-request waits (429/503, transient stops) one sync sits through. */
const MAX_WAITS = 6;

export class SyncEngine {
  /**
   * @param {{store: Store, transport: Transport, now?: () => string, uuid?: () => string,
   *   sleep?: (ms: number) => Promise<void>, random?: () => number,
   *   onProgress?: (p: Progress) => void}} deps
   */
  constructor(deps) {
    this.store = deps.store;
    this.transport = deps.transport;
    this.now = deps.now || localNow;
    this.uuid = deps.uuid || uuidv7;
    this.sleep = deps.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.random = deps.random || Math.random;
    this.onProgress = deps.onProgress || (() => {});
    /** @type {State} */
    this.state = { meta: { ...freshMeta(), auth: null, revoked: false }, ops: [], records: [], conflicts: [] };
    /** @type {Map<string, ServerRecord>} */
    this.records = new Map();
    /** @type {Map<string, import('./core.js').LocalRecord>|null} the view until the next commit */
    this.cachedView = null;
  }

  /** Loads the durable state; call once before anything else. */
  async open() {
    const s = await this.store.load();
    // A new phone's store has an empty meta: every missing key takes its default.
    const stored = /** @type {Partial<DeviceMeta>} */ (s.meta);
    this.state = { ...s, meta: { ...freshMeta(), auth: null, revoked: false, ...stored } };
    this.records = new Map(s.records.map((r) => [r.id, r]));
    this.cachedView = null;
    return this;
  }

  /**
   * Commits changes durably, then mirrors them in memory.
   * @param {Changes & {meta?: Partial<DeviceMeta>}} changes
   */
  async commit(changes) {
    await this.store.commit(changes);
    this.cachedView = null;
    const st = this.state;
    if (changes.meta) st.meta = { ...st.meta, ...changes.meta };
    if (changes.clearRecords) this.records.clear();
    for (const id of changes.deleteRecords || []) this.records.delete(id);
    for (const r of changes.putRecords || []) this.records.set(r.id, r);
    st.records = [...this.records.values()];
    if (changes.putOps && changes.putOps.length > 0) {
      const bySeq = new Map(st.ops.map((o) => [o.seq, o]));
      for (const o of changes.putOps) bySeq.set(o.seq, o);
      st.ops = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    }
    if (changes.putConflicts && changes.putConflicts.length > 0) {
      const byId = new Map(st.conflicts.map((c) => [c.id, c]));
      for (const c of changes.putConflicts) byId.set(c.id, c);
      st.conflicts = [...byId.values()];
    }
  }

  get signedIn() {
    return this.state.meta.auth !== null;
  }

  /** Ops not acknowledged by the server yet. */
  unacked() {
    return this.state.ops.filter((o) => !o.result);
  }

  /** The records as the worker sees them, own unsynced changes included (the same map until the next commit: read it, do not change it). */
  view() {
    if (!this.cachedView) this.cachedView = view(this.state.meta, this.records.values(), this.state.ops);
    return this.cachedView;
  }

  /**
   * Records one change of the worker's: durable (with its seq) when the promise resolves.
   * @param {{entity: EntityName, id?: string, kind: 'create'|'update'|'delete', set?: Record<string, unknown>}} change
   * @returns {Promise<Op>}
   */
  async record(change) {
    const id = change.id || this.uuid();
    const ops = this.state.ops.filter((o) => o.id === id);
    const { op, meta } = planChange(
      this.state.meta,
      { ...change, id },
      { record: this.records.get(id), ops, now: this.now(), opId: this.uuid() },
    );
    await this.commit({ meta, putOps: [op] });
    return op;
  }

  /**
   * Signs in; registers the phone once (a new phone gets a device id the server binds tokens to).
   * @param {string} username
   * @param {string} password
   * @param {string} deviceName
   */
  async signIn(username, password, deviceName) {
    const meta = this.state.meta;
    if (meta.auth && meta.auth.user.username !== username && this.state.ops.length > 0) {
      throw new SyncError('other_user', 'this phone holds another worker\'s data: sign out first');
    }
    const sameUser = meta.auth && meta.auth.user.username === username;
    const deviceId = sameUser && meta.auth ? meta.auth.device_id : null;
    const login = await this.call('/api/v1/auth/login', { username, password, ...(deviceId ? { device_id: deviceId } : {}) }, null);
    let auth = { access_token: login.access_token, refresh_token: login.refresh_token, device_id: deviceId || '', user: login.user };
    if (!deviceId) {
      const reg = await this.call('/api/v1/devices', { name: deviceName, app_version: 'field-1' }, login.access_token);
      auth = { ...auth, access_token: reg.access_token, refresh_token: reg.refresh_token, device_id: reg.device_id };
    }
    await this.adopt(auth);
  }

  /**
   * Enrols the phone with the one-time code an administrator issued for it (no password typed
   * on the phone): the server answers the device id and tokens bound to it. A phone that holds
   * another worker's unsent changes refuses, as a sign-in does.
   * @param {string} code
   */
  async enrol(code) {
    const meta = this.state.meta;
    if (meta.auth && this.unacked().length > 0) {
      throw new SyncError('other_user', 'this phone holds unsent changes of a signed-in worker: sign out first');
    }
    const reg = await this.call('/api/v1/devices/enrol', { enrolment_code: code, app_version: 'field-1' }, null);
    if (meta.auth && meta.auth.user.username !== reg.user.username) await this.wipe();
    await this.adopt({ access_token: reg.access_token, refresh_token: reg.refresh_token, device_id: reg.device_id, user: reg.user });
  }

  /**
   * Keeps the device-bound session a sign-in or an enrolment gave, with the scope it may sync.
   * @param {Auth} auth
   */
  async adopt(auth) {
    const me = await this.send('/api/v1/me', undefined, auth.access_token, 'GET');
    const scope = /** @type {string[]} */ ((me.body && me.body.scope) || []);
    await this.commit({ meta: { auth, revoked: false, scope } });
  }

  /**
   * Signs out and wipes the phone's copy (personal data). With unsent ops it pushes first; if
   * some are still unsent it refuses unless `discardUnsent` is set.
   * @param {{discardUnsent?: boolean}} [opts]
   */
  async signOut(opts = {}) {
    if (this.unacked().length > 0 && !this.state.meta.revoked) {
      try {
        await this.sync();
      } catch (e) {
        if (!opts.discardUnsent) throw e;
      }
    }
    const left = this.unacked().length;
    if (left > 0 && !opts.discardUnsent) {
      throw new SyncError('unsent_ops', `${left} changes are not on the server yet`, { count: left });
    }
    const auth = this.state.meta.auth;
    if (auth && !this.state.meta.revoked) {
      try {
        await this.transport('POST', '/api/v1/auth/logout', { refresh_token: auth.refresh_token }, null);
      } catch {
        // Offline: the refresh token expires by itself; the local wipe is what matters here.
      }
    }
    await this.wipe();
  }

  /** Deletes everything on the phone. */
  async wipe() {
    await this.store.wipe();
    this.state = { meta: { ...freshMeta(), auth: null, revoked: false }, ops: [], records: [], conflicts: [] };
    this.records = new Map();
    this.cachedView = null;
  }

  /**
   * One sync: push every unacknowledged op, pull every change, and push again what a reset left.
   * @returns {Promise<SyncSummary>}
   */
  async sync() {
    if (this.state.meta.revoked) throw new SyncError('revoked', 'this phone was revoked by the administrator');
    /** @type {SyncSummary} */
    const summary = { sent: 0, applied: 0, review: 0, flagged: 0, rejected: [], pages: 0, reset: false };
    for (let round = 0; round < 3; round++) {
      await this.pushAll(summary);
      const reset = await this.pullAll(summary);
      if (!reset && this.unacked().length === 0) break;
    }
    return summary;
  }

  /** @param {SyncSummary} summary */
  async pushAll(summary) {
    let waits = 0;
    for (;;) {
      const batch = planBatch(this.state.meta, this.unacked());
      if (!batch) return;
      // Durable before the request leaves: a closed tab resends exactly this batch.
      await this.commit({
        meta: { inflight: { from: batch.from, to: batch.to } },
        putOps: batch.ops.filter((o) => !o.sent).map((o) => ({ ...o, sent: true })),
      });
      batch.ops = batch.ops.map((o) => ({ ...o, sent: true }));
      this.onProgress({ phase: 'push', sent: summary.sent, pending: this.unacked().length, pages: summary.pages });
      const body = { ops: batch.ops.map(wireOp), sent_at: this.now() };
      const ans = await this.authorized('/api/v1/sync/push', body);
      if (ans.status === 413) {
        await this.commit({ meta: planSplit(this.state.meta, batch, ans.body && ans.body.details) });
        continue;
      }
      if (ans.status !== 200) {
        waits = await this.waitOrFail(ans, waits);
        continue;
      }
      summary.sent += batch.ops.length;
      const plan = planPushAnswer(this.state.meta, batch, ans.body, this.state.ops);
      await this.commit(plan.changes);
      count(summary, plan.changes.putOps || []);
      if (Object.keys(plan.redirects).length > 0) {
        await this.commit({ putOps: repointUnsent(this.state.ops, this.state.meta.redirects) });
      }
      if (plan.outcome === 'gap' && !(plan.changes.putOps || []).some((o) => !o.result)) {
        throw new SyncError('gap', `the server misses ops before seq ${batch.from} that this phone no longer has`);
      }
      if (plan.outcome === 'transient') {
        if (++waits > MAX_WAITS) throw new SyncError('busy', 'the server is busy: try again later');
        await this.sleep(1000 * backoffSeconds(waits, plan.retryAfter, this.random()));
      }
    }
  }

  /**
   * @param {SyncSummary} summary
   * @returns {Promise<boolean>} whether the server asked for a fresh snapshot
   */
  async pullAll(summary) {
    let waits = 0;
    let reset = false;
    for (;;) {
      this.onProgress({ phase: 'pull', sent: summary.sent, pending: this.unacked().length, pages: summary.pages });
      const ans = await this.authorized('/api/v1/sync/pull', { cursor: this.state.meta.cursor });
      if (ans.status !== 200) {
        waits = await this.waitOrFail(ans, waits);
        continue;
      }
      const plan = planPage(this.state.meta, this.records, ans.body);
      await this.commit(plan.changes);
      summary.pages += 1;
      if (plan.reset) {
        if (reset) throw new SyncError('http', 'the server asked for a reset twice in one sync');
        reset = summary.reset = true;
        // The worker's villages may have changed: the snapshot is kept against the new ones.
        const me = await this.authorized('/api/v1/me', undefined, 'GET');
        if (me.status === 200 && me.body && Array.isArray(me.body.scope)) await this.commit({ meta: { scope: me.body.scope } });
        continue;
      }
      if (Object.keys(plan.redirects).length > 0) {
        await this.commit({ putOps: repointUnsent(this.state.ops, this.state.meta.redirects) });
      }
      if (plan.done) return reset;
    }
  }

  /**
   * Waits out a 429/503 (Retry-After) or throws for anything else.
   * @param {Answer} ans
   * @param {number} waits
   */
  async waitOrFail(ans, waits) {
    const c = classifyFailure(ans.status, ans.body, ans.retryAfter);
    if (c.action === 'wait' && waits < MAX_WAITS) {
      await this.sleep(1000 * backoffSeconds(waits + 1, c.waitSeconds, this.random()));
      return waits + 1;
    }
    if (c.action === 'wait') throw new SyncError('busy', 'the server is busy: try again later');
    throw new SyncError('http', `HTTP ${ans.status} ${(ans.body && ans.body.code) || ''}`, { status: ans.status, body: ans.body });
  }

  /**
   * A sync call with the device's token: refreshes once on 401, stops for good on 403.
   * @param {string} path
   * @param {unknown} body
   * @param {'GET'|'POST'} [method]
   * @returns {Promise<Answer>}
   */
  async authorized(path, body, method = 'POST') {
    const auth = this.state.meta.auth;
    if (!auth) throw new SyncError('signed_out', 'sign in first');
    let ans = await this.send(path, body, auth.access_token, method);
    if (ans.status === 401) {
      await this.refresh();
      const again = this.state.meta.auth;
      ans = await this.send(path, body, again ? again.access_token : null, method);
      if (ans.status === 401) throw new SyncError('signed_out', 'sign in again');
    }
    if (ans.status === 403) {
      // Revoked: nothing more is sent; unsent ops stay until the worker has been told.
      await this.commit({ meta: { revoked: true } });
      throw new SyncError('revoked', 'this phone was revoked by the administrator', { unsent: this.unacked().length });
    }
    return ans;
  }

  async refresh() {
    const auth = this.state.meta.auth;
    if (!auth) throw new SyncError('signed_out', 'sign in first');
    const ans = await this.send('/api/v1/auth/refresh', { refresh_token: auth.refresh_token }, null);
    if (ans.status === 403) {
      await this.commit({ meta: { revoked: true } });
      throw new SyncError('revoked', 'this phone was revoked by the administrator', { unsent: this.unacked().length });
    }
    if (ans.status !== 200) throw new SyncError('signed_out', 'the session ended: sign in again');
    // The new refresh token is stored before it is used (the old one dies with this answer).
    await this.commit({ meta: { auth: { ...auth, access_token: ans.body.access_token, refresh_token: ans.body.refresh_token } } });
  }

  /**
   * @param {string} path
   * @param {unknown} body
   * @param {string|null} token
   * @param {'GET'|'POST'} [method]
   */
  async send(path, body, token, method = 'POST') {
    try {
      return await this.transport(method, path, body, token);
    } catch (e) {
      throw new SyncError('offline', 'no connection to the server', { cause: String(e) });
    }
  }

  /**
   * A call outside sync (sign-in) that must answer 200/201.
   * @param {string} path
   * @param {unknown} body
   * @param {string|null} token
   */
  async call(path, body, token) {
    const ans = await this.send(path, body, token);
    if (ans.status === 200 || ans.status === 201) return ans.body;
    throw new SyncError('http', `HTTP ${ans.status} ${(ans.body && ans.body.code) || ''}`, { status: ans.status, body: ans.body });
  }
}

/**
 * @param {SyncSummary} summary
 * @param {Op[]} ops  ops just acknowledged
 */
function count(summary, ops) {
  for (const op of ops) {
    if (!op.result) continue;
    const r = op.result.status === 'duplicate' && op.result.first ? op.result.first : op.result;
    if (r.status === 'rejected') {
      summary.rejected.push({ seq: op.seq, entity: op.entity, id: op.id, code: r.code || '', message: r.message || '' });
      continue;
    }
    summary.applied += 1;
    if ((r.conflicts || []).some((c) => c.status === 'open')) summary.review += 1;
    if ((r.flags || []).length > 0) summary.flagged += 1;
  }
}

/** The phone's clock as RFC 3339 with its offset, to the second. */
export function localNow(d = new Date()) {
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const pad = (/** @type {number} */ n) => String(Math.abs(n)).padStart(2, '0');
  const local = new Date(d.getTime() + off * 60000).toISOString().slice(0, 19);
  return `${local}${sign}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

/** A UUID v7 (time-ordered, as docs/sync.md recommends), from the platform's random source. */
export function uuidv7() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
