// A small in-memory stand-in for the fieldsync server, enough to drive the engine through every
// branch of the protocol: per-device seq ledger (duplicates, gaps), versions, merges with
// redirects, a change log paged by cursor, scope, and knobs to fail the next requests.

export class FakeServer {
  constructor({ scope = ['130131100201'], pageSize = 3, maxOps = 1000 } = {}) {
    this.scope = scope;
    this.pageSize = pageSize;
    this.maxOps = maxOps;
    /** @type {Map<string, any>} id -> record */
    this.records = new Map();
    /** @type {Map<number, any>} seq -> result, for the one device */
    this.ledger = new Map();
    this.lastSeq = 0;
    this.changeSeq = 0;
    this.applied = [];
    /** @type {{status: number, body?: any, retryAfter?: string}[]} answers to give instead of the next ones */
    this.failures = [];
    /** When set, the next push is processed and its answer lost. */
    this.loseNextAnswer = false;
    this.refreshToken = 'r1';
    this.accessToken = 'a1';
    this.resetNext = false;
    this.requests = [];
  }

  put(rec) {
    this.changeSeq += 1;
    this.records.set(rec.id, { ...rec, change_seq: this.changeSeq });
  }

  /** Merges `from` into `to` as a supervisor would, re-pointing children. */
  merge(from, to) {
    const old = this.records.get(from);
    this.put({ ...old, version: old.version + 1, deleted: true, merged_into: to });
    for (const r of [...this.records.values()]) {
      if (!r.deleted && r.fields.person_id === from) this.put({ ...r, version: r.version + 1, fields: { ...r.fields, person_id: to } });
    }
  }

  canonical(id) {
    let r = this.records.get(id);
    while (r && r.merged_into) {
      id = r.merged_into;
      r = this.records.get(id);
    }
    return id;
  }

  transport() {
    return async (method, path, body, token) => {
      this.requests.push({ method, path, body: structuredClone(body), token });
      if (path !== '/api/v1/auth/refresh' && this.failures.length > 0) {
        const f = this.failures.shift();
        return { status: f.status, body: f.body || { code: 'x' }, retryAfter: f.retryAfter || null };
      }
      if (path === '/api/v1/auth/login') return ok({ access_token: 'a0', refresh_token: 'r0', user: { id: 'u1', username: body.username, role: 'worker', org_unit: this.scope[0] } });
      if (path === '/api/v1/devices') return { status: 201, body: { device_id: 'd1', access_token: this.accessToken, refresh_token: this.refreshToken }, retryAfter: null };
      if (path === '/api/v1/me') return ok({ scope: this.scope });
      if (path === '/api/v1/auth/logout') return { status: 204, body: null, retryAfter: null };
      if (path === '/api/v1/auth/refresh') {
        if (body.refresh_token !== this.refreshToken) return { status: 401, body: { code: 'bad_refresh' }, retryAfter: null };
        this.refreshToken += '+';
        this.accessToken += '+';
        return ok({ access_token: this.accessToken, refresh_token: this.refreshToken });
      }
      if (token !== this.accessToken) return { status: 401, body: { code: 'token_expired' }, retryAfter: null };
      if (path === '/api/v1/sync/push') {
        if (body.ops.length > this.maxOps) return { status: 413, body: { code: 'too_large', details: { max_ops_per_batch: this.maxOps, max_body_bytes: 1 << 20 } }, retryAfter: null };
        const answer = this.push(body.ops);
        if (this.loseNextAnswer) {
          this.loseNextAnswer = false;
          throw new Error('connection reset');
        }
        return ok(answer);
      }
      if (path === '/api/v1/sync/pull') return ok(this.pull(body.cursor));
      return { status: 404, body: null, retryAfter: null };
    };
  }

  push(ops) {
    const results = [];
    for (const op of ops) {
      if (this.ledger.has(op.seq)) {
        results.push({ ...this.ledger.get(op.seq), status: 'duplicate', first: this.ledger.get(op.seq) });
        continue;
      }
      if (op.seq !== this.lastSeq + 1) {
        return { device_id: 'd1', last_seq: this.lastSeq, results, stopped_at: op.seq, stop_reason: 'gap' };
      }
      const r = this.apply(op);
      this.ledger.set(op.seq, r);
      this.lastSeq = op.seq;
      results.push(r);
    }
    return { device_id: 'd1', last_seq: this.lastSeq, results };
  }

  apply(op) {
    const head = { seq: op.seq, op_id: op.op_id, entity: op.entity, id: op.id };
    const id = this.canonical(op.id);
    const cur = this.records.get(id);
    const orgUnit = (op.set && op.set.org_unit) || (cur && cur.org_unit);
    if (!orgUnit || !this.scope.some((s) => orgUnit.startsWith(s))) {
      return { ...head, status: 'rejected', code: 'out_of_scope', message: 'another village', retryable: false };
    }
    this.applied.push(op.seq);
    const { org_unit: _, ...fields } = op.set || {};
    const conflicts = [];
    if (cur && op.kind === 'update' && op.base_version < cur.version) {
      for (const k of Object.keys(fields)) {
        if (cur.fields[k] !== undefined && cur.fields[k] !== fields[k]) {
          conflicts.push({ id: `c${op.seq}`, entity: op.entity, record_id: id, field: k, kind: 'field', policy: 'review', status: 'open', winner: 'server', base_value: null, server_value: cur.fields[k], device_value: fields[k] });
          delete fields[k];
        }
      }
    }
    const version = cur ? cur.version + 1 : 1;
    this.put({ entity: op.entity, id, org_unit: orgUnit, version, deleted: op.kind === 'delete', fields: { ...(cur ? cur.fields : {}), ...fields } });
    const r = { ...head, status: id === op.id ? 'applied' : 'redirected', version, conflicts };
    if (id !== op.id) r.canonical_id = id;
    return r;
  }

  pull(cursor) {
    if (this.resetNext) {
      this.resetNext = false;
      return { records: [], conflicts: [], last_seq: this.lastSeq, next_cursor: cursor, has_more: false, reset_required: true, reset_reason: 'scope_changed' };
    }
    const changes = [...this.records.values()]
      .filter((r) => r.change_seq > cursor && (cursor > 0 || !r.deleted))
      .sort((a, b) => a.change_seq - b.change_seq);
    const page = changes.slice(0, this.pageSize);
    const more = changes.length > this.pageSize;
    const next = page.length > 0 ? page[page.length - 1].change_seq : Math.max(cursor, this.changeSeq);
    return { records: structuredClone(page), conflicts: [], last_seq: this.lastSeq, next_cursor: more ? next : Math.max(next, this.changeSeq), has_more: more, reset_required: false };
  }
}

function ok(body) {
  return { status: 200, body, retryAfter: null };
}
