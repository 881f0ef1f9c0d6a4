// The device side of the sync protocol (PROTOCOL.md, docs/sync.md) as pure functions: no
// IndexedDB, no fetch, no clock. The engine (engine.js) loads state through a store adapter,
// asks these functions what to do, and commits what they return in one store transaction.

/**
 * @typedef {'household'|'person'|'pregnancy'|'birth'|'death'|'measure'|'visit'|'migration'|'supply'|'benefit'} EntityName
 * @typedef {'create'|'update'|'delete'} OpKind
 * @typedef {Record<string, unknown>} Fields
 *
 * @typedef {object} Op  One local change, durable from the moment it is written.
 * @property {number} seq           the device's counter, assigned when the op is written, never reused
 * @property {string} op_id         a UUID for logs
 * @property {EntityName} entity
 * @property {string} id            the record's UUID
 * @property {OpKind} kind
 * @property {number} [base_version] the server version the edit was made on (absent for a create)
 * @property {Fields} set           the changed fields only
 * @property {string} recorded_at   RFC 3339 with offset, phone clock
 * @property {boolean} sent         true once the op was put in a batch: from then on it is never changed
 * @property {OpResult} [result]    the server's answer, once acknowledged
 *
 * @typedef {object} ConflictOut
 * @property {string} id
 * @property {string} entity
 * @property {string} record_id
 * @property {string|null} field
 * @property {string} kind
 * @property {string} policy
 * @property {string} status
 * @property {string} winner
 * @property {unknown} base_value
 * @property {unknown} server_value
 * @property {unknown} device_value
 *
 * @typedef {object} OpResult
 * @property {number} seq
 * @property {string} op_id
 * @property {'applied'|'duplicate'|'redirected'|'rejected'} status
 * @property {string} entity
 * @property {string} id
 * @property {number} [version]
 * @property {string} [canonical_id]
 * @property {ConflictOut[]} [conflicts]
 * @property {string[]} [flags]
 * @property {string} [code]
 * @property {string} [message]
 * @property {OpResult} [first]
 *
 * @typedef {object} PushResponse
 * @property {string} device_id
 * @property {number} last_seq
 * @property {OpResult[]} results
 * @property {number} [stopped_at]
 * @property {'gap'|'transient'} [stop_reason]
 * @property {number} [retry_after]
 *
 * @typedef {object} ServerRecord  A record as the server last sent it.
 * @property {EntityName} entity
 * @property {string} id
 * @property {string} org_unit
 * @property {number} version
 * @property {boolean} deleted
 * @property {string} [merged_into]
 * @property {Fields} fields
 * @property {number} change_seq
 *
 * @typedef {object} PullResponse
 * @property {ServerRecord[]} records
 * @property {ConflictOut[]} conflicts
 * @property {number} last_seq
 * @property {number} next_cursor
 * @property {boolean} has_more
 * @property {boolean} reset_required
 * @property {string} [reset_reason]
 *
 * @typedef {object} Limits
 * @property {number} max_ops_per_batch
 * @property {number} max_body_bytes
 *
 * @typedef {object} Meta  The device's sync state, one small object.
 * @property {number} next_seq        the seq the next op gets
 * @property {number} cursor          pull cursor (0: no snapshot yet)
 * @property {number} snapshot_last_seq  the device's last_seq as of the last complete pull
 * @property {{from: number, to: number}|null} inflight  the batch sent and not yet fully answered
 * @property {Limits} limits
 * @property {Record<string, string>} redirects  merged id -> surviving id
 * @property {string[]} scope         the village (or group) codes the device holds
 *
 * @typedef {object} Changes  Everything one step writes, committed atomically by the store.
 * @property {Partial<Meta>} [meta]
 * @property {Op[]} [putOps]
 * @property {ServerRecord[]} [putRecords]
 * @property {string[]} [deleteRecords]
 * @property {boolean} [clearRecords]
 * @property {ConflictOut[]} [putConflicts]
 */

/** The server's defaults (src/settings.rs); a 413 answer replaces them with the real ones. */
export const DEFAULT_LIMITS = Object.freeze({ max_ops_per_batch: 1000, max_body_bytes: 4 * 1024 * 1024 });

/** Room left in a body for the envelope around the ops. */
const ENVELOPE_BYTES = 256;

/**
 * Fields that point at another record, by entity (src/domain/entities.rs, `FieldType::Ref`).
 * @type {Record<EntityName, Record<string, EntityName>>}
 */
export const REFS = {
  household: {},
  person: { household_id: 'household' },
  pregnancy: { person_id: 'person' },
  birth: { mother_id: 'person', child_id: 'person' },
  death: { person_id: 'person' },
  measure: { person_id: 'person' },
  visit: { person_id: 'person' },
  migration: { person_id: 'person' },
  supply: { person_id: 'person' },
  benefit: { person_id: 'person', household_id: 'household' },
};

/** @returns {Meta} */
export function freshMeta() {
  return {
    next_seq: 1,
    cursor: 0,
    snapshot_last_seq: 0,
    inflight: null,
    limits: { ...DEFAULT_LIMITS },
    redirects: {},
    scope: [],
  };
}

/**
 * Follows redirects to the surviving id (a survivor may itself have been merged later).
 * @param {Record<string, string>} redirects
 * @param {string} id
 */
export function canonical(redirects, id) {
  let cur = id;
  for (let i = 0; i < 32 && redirects[cur]; i++) cur = redirects[cur];
  return cur;
}

/**
 * Whether a code lies in the device's scope (a village code covers its groups).
 * @param {string[]} scope
 * @param {string} orgUnit
 */
export function inScope(scope, orgUnit) {
  return scope.some((root) => orgUnit.startsWith(root));
}

/**
 * The highest server version this device knows of a record: from the last pull, or from the
 * answer to its own latest acknowledged op on it.
 * @param {ServerRecord|undefined} record
 * @param {Op[]} opsOfRecord  the record's ops, oldest first
 */
export function knownVersion(record, opsOfRecord) {
  let v = record ? record.version : 0;
  for (const op of opsOfRecord) {
    const r = op.result && (op.result.first || op.result);
    if (r && typeof r.version === 'number' && r.version > v) v = r.version;
  }
  return v;
}

/**
 * Plans writing one local change. The op gets its seq now, before any network. An update of a
 * record whose latest op was never sent is folded into that op (it keeps its seq): nothing has
 * seen it yet, and a second op from the same stale base would conflict with the device's own
 * first edit. Once an op was sent it is never changed, so a resend is the same batch.
 *
 * @param {Meta} meta
 * @param {{entity: EntityName, id: string, kind: OpKind, set?: Fields}} change
 * @param {{record?: ServerRecord, ops: Op[], now: string, opId: string}} ctx
 *   `ops`: this record's existing ops, oldest first; `now`: RFC 3339 with offset
 * @returns {{op: Op, meta: Partial<Meta>}}
 */
export function planChange(meta, change, ctx) {
  const set = { ...(change.set || {}) };
  const last = ctx.ops[ctx.ops.length - 1];
  if (change.kind === 'update' && last && !last.sent && last.kind !== 'delete') {
    return { op: { ...last, set: { ...last.set, ...set }, recorded_at: ctx.now }, meta: {} };
  }
  /** @type {Op} */
  const op = {
    seq: meta.next_seq,
    op_id: ctx.opId,
    entity: change.entity,
    id: change.id,
    kind: change.kind,
    set,
    recorded_at: ctx.now,
    sent: false,
  };
  if (change.kind !== 'create') {
    // A record created on this phone and not acknowledged yet will be version 1.
    const created = ctx.ops.some((o) => o.kind === 'create');
    op.base_version = knownVersion(ctx.record, ctx.ops) || (created ? 1 : 0);
  }
  return { op, meta: { next_seq: meta.next_seq + 1 } };
}

/**
 * The wire form of an op.
 * @param {Op} op
 */
export function wireOp(op) {
  /** @type {Record<string, unknown>} */
  const out = { seq: op.seq, op_id: op.op_id, entity: op.entity, id: op.id, kind: op.kind, set: op.set, recorded_at: op.recorded_at };
  if (op.base_version !== undefined) out.base_version = op.base_version;
  return out;
}

/** @param {unknown} v */
function jsonBytes(v) {
  return new TextEncoder().encode(JSON.stringify(v)).length;
}

/**
 * The next batch to send: the batch in flight again, unchanged (what the server did not answer
 * yet), or a new one of the oldest unacknowledged ops within the limits.
 * @param {Meta} meta
 * @param {Op[]} unacked  ops without a result, by seq
 * @returns {{from: number, to: number, ops: Op[]}|null}
 */
export function planBatch(meta, unacked) {
  if (unacked.length === 0) return null;
  if (meta.inflight) {
    const { from, to } = meta.inflight;
    const ops = unacked.filter((o) => o.seq >= from && o.seq <= to);
    if (ops.length > 0) return { from: ops[0].seq, to, ops };
  }
  const ops = [];
  let bytes = ENVELOPE_BYTES;
  for (const op of unacked) {
    const size = jsonBytes(wireOp(op)) + 1;
    if (ops.length > 0 && (ops.length >= meta.limits.max_ops_per_batch || bytes + size > meta.limits.max_body_bytes)) break;
    ops.push(op);
    bytes += size;
  }
  return { from: ops[0].seq, to: ops[ops.length - 1].seq, ops };
}

/**
 * After a 413: the limits the server sent (or half of what was tried), and the batch in flight
 * cut to its first half. Nothing of a refused request was applied, so a smaller batch is safe.
 * @param {Meta} meta
 * @param {{from: number, to: number, ops: Op[]}} batch
 * @param {Partial<Limits>|undefined} details
 * @returns {Partial<Meta>}
 */
export function planSplit(meta, batch, details) {
  const half = Math.max(1, Math.floor(batch.ops.length / 2));
  const limits = {
    max_ops_per_batch: Math.min(details?.max_ops_per_batch ?? meta.limits.max_ops_per_batch, half),
    max_body_bytes: details?.max_body_bytes ?? meta.limits.max_body_bytes,
  };
  const to = batch.ops[half - 1].seq;
  return { limits, inflight: { from: batch.from, to } };
}

/**
 * What a push answer means for the log.
 * @param {Meta} meta
 * @param {{from: number, to: number, ops: Op[]}} batch
 * @param {PushResponse} resp
 * @param {Op[]} allOps  every op of the log (a gap may ask for ops thought acknowledged)
 * @returns {{changes: Changes, outcome: 'done'|'more'|'gap'|'transient', retryAfter?: number, redirects: Record<string, string>}}
 */
export function planPushAnswer(meta, batch, resp, allOps) {
  /** @type {Op[]} */
  const putOps = [];
  /** @type {ConflictOut[]} */
  const putConflicts = [];
  /** @type {Record<string, string>} */
  const redirects = {};
  const bySeq = new Map(batch.ops.map((o) => [o.seq, o]));
  for (const r of resp.results) {
    const op = bySeq.get(r.seq);
    if (!op) continue;
    putOps.push({ ...op, sent: true, result: r });
    const eff = r.status === 'duplicate' && r.first ? r.first : r;
    for (const c of eff.conflicts || []) putConflicts.push(c);
    if (eff.status === 'redirected' && eff.canonical_id && eff.canonical_id !== op.id) redirects[op.id] = eff.canonical_id;
  }
  const answered = new Set(resp.results.map((r) => r.seq));
  const pending = batch.ops.filter((o) => !answered.has(o.seq));
  /** @type {Partial<Meta>} */
  const metaOut = {};
  let outcome = /** @type {'done'|'more'|'gap'|'transient'} */ ('done');
  if (resp.stop_reason === 'gap') {
    // The server lacks ops before this batch: send again from its last_seq + 1. Those ops are
    // in the log (never removed), marked as answered by mistake or lost with a server restore.
    outcome = 'gap';
    for (const op of allOps) {
      if (op.seq > resp.last_seq && op.seq < batch.from && op.result) putOps.push({ ...op, result: undefined });
    }
    metaOut.inflight = null;
  } else if (resp.stop_reason === 'transient' || pending.length > 0) {
    outcome = 'transient';
    metaOut.inflight = pending.length > 0 ? { from: pending[0].seq, to: batch.to } : null;
  } else {
    metaOut.inflight = null;
    outcome = 'more';
  }
  if (Object.keys(redirects).length > 0) metaOut.redirects = { ...meta.redirects, ...redirects };
  const changes = { meta: metaOut, putOps, putConflicts };
  return { changes, outcome, retryAfter: resp.retry_after, redirects };
}

/**
 * Rewrites references to merged ids in ops never sent, so a child entered offline for a person
 * that turned out to be a duplicate points at the survivor. Sent ops stay as they were sent.
 * @param {Op[]} ops
 * @param {Record<string, string>} redirects
 * @returns {Op[]} the ops that changed
 */
export function repointUnsent(ops, redirects) {
  const out = [];
  for (const op of ops) {
    if (op.sent) continue;
    const refs = REFS[op.entity] || {};
    let changed = false;
    const set = { ...op.set };
    for (const f of Object.keys(refs)) {
      const v = set[f];
      if (typeof v === 'string' && canonical(redirects, v) !== v) {
        set[f] = canonical(redirects, v);
        changed = true;
      }
    }
    if (changed) out.push({ ...op, set });
  }
  return out;
}

/**
 * Applies one pull page: records at their latest version replace older local copies, a
 * tombstone drops the record (a merge's tombstone redirects its id and re-points local
 * children), a record now outside the device's villages is dropped, conflicts are kept.
 * On `reset_required` the local copy of server records is discarded and the pull restarts at 0.
 * @param {Meta} meta
 * @param {Map<string, ServerRecord>} records  the local copies, by id
 * @param {PullResponse} page
 * @returns {{changes: Changes, reset: boolean, done: boolean, redirects: Record<string, string>}}
 */
export function planPage(meta, records, page) {
  if (page.reset_required) {
    return {
      changes: { clearRecords: true, meta: { cursor: 0, snapshot_last_seq: 0 } },
      reset: true,
      done: false,
      redirects: {},
    };
  }
  /** @type {Map<string, ServerRecord>} */
  const put = new Map();
  /** @type {Set<string>} */
  const del = new Set();
  /** @type {Record<string, string>} */
  const redirects = {};
  for (const rec of page.records) {
    const local = put.get(rec.id) || records.get(rec.id);
    if (local && !del.has(rec.id) && local.version > rec.version) continue;
    if (rec.deleted || !inScope(meta.scope, rec.org_unit)) {
      put.delete(rec.id);
      del.add(rec.id);
      if (rec.merged_into) redirects[rec.id] = rec.merged_into;
    } else {
      del.delete(rec.id);
      put.set(rec.id, rec);
    }
  }
  const allRedirects = { ...meta.redirects, ...redirects };
  if (Object.keys(redirects).length > 0) {
    // Children the server re-pointed come on a page with their new version; local copies that
    // the page did not carry are re-pointed here so the phone never shows a dangling reference.
    for (const rec of records.values()) {
      if (put.has(rec.id) || del.has(rec.id)) continue;
      const moved = repointRecord(rec, allRedirects);
      if (moved) put.set(rec.id, moved);
    }
  }
  /** @type {Partial<Meta>} */
  const metaOut = { cursor: page.next_cursor };
  if (!page.has_more) metaOut.snapshot_last_seq = page.last_seq;
  if (Object.keys(redirects).length > 0) metaOut.redirects = allRedirects;
  return {
    changes: { meta: metaOut, putRecords: [...put.values()], deleteRecords: [...del], putConflicts: page.conflicts },
    reset: false,
    done: !page.has_more,
    redirects,
  };
}

/**
 * @param {ServerRecord} rec
 * @param {Record<string, string>} redirects
 * @returns {ServerRecord|null} the record with its references re-pointed, or null if none moved
 */
function repointRecord(rec, redirects) {
  const refs = REFS[rec.entity] || {};
  let fields = null;
  for (const f of Object.keys(refs)) {
    const v = rec.fields[f];
    if (typeof v === 'string' && canonical(redirects, v) !== v) {
      fields = fields || { ...rec.fields };
      fields[f] = canonical(redirects, v);
    }
  }
  return fields ? { ...rec, fields } : null;
}

/**
 * @typedef {object} LocalRecord  What the phone shows: the server's copy with the device's own
 *   ops not yet reflected in a pull laid over it.
 * @property {EntityName} entity
 * @property {string} id
 * @property {string} org_unit
 * @property {number} version      the server version it is based on (0: never synced)
 * @property {Fields} fields
 * @property {boolean} pending     local changes not yet seen in a pull
 * @property {boolean} rejected    a local change to it was rejected by the server
 */

/**
 * The records as the worker sees them. An op with a seq above the device's last_seq of the
 * last complete pull is not in the server copies yet, so it is laid over them (read your own
 * writes offline); a rejected op is not, since the server will never hold it.
 * @param {Meta} meta
 * @param {Iterable<ServerRecord>} records
 * @param {Op[]} ops  by seq
 * @returns {Map<string, LocalRecord>}
 */
export function view(meta, records, ops) {
  /** @type {Map<string, LocalRecord>} */
  const out = new Map();
  for (const r of records) {
    out.set(r.id, { entity: r.entity, id: r.id, org_unit: r.org_unit, version: r.version, fields: r.fields, pending: false, rejected: false });
  }
  for (const op of ops) {
    if (op.seq <= meta.snapshot_last_seq) continue;
    const id = canonical(meta.redirects, op.id);
    const status = op.result && (op.result.first || op.result).status;
    const cur = out.get(id);
    if (status === 'rejected') {
      if (cur) out.set(id, { ...cur, rejected: true });
      continue;
    }
    const set = /** @type {Fields} */ ({});
    for (const [k, v] of Object.entries(op.set)) {
      set[k] = k in (REFS[op.entity] || {}) && typeof v === 'string' ? canonical(meta.redirects, v) : v;
    }
    if (op.kind === 'delete') {
      out.delete(id);
    } else if (cur) {
      const fields = { ...cur.fields };
      for (const [k, v] of Object.entries(set)) {
        if (k === 'org_unit') continue;
        if (v === null) delete fields[k];
        else fields[k] = v;
      }
      out.set(id, { ...cur, org_unit: typeof set.org_unit === 'string' ? set.org_unit : cur.org_unit, fields, pending: true });
    } else if (op.kind === 'create') {
      const fields = /** @type {Fields} */ ({});
      for (const [k, v] of Object.entries(set)) if (k !== 'org_unit' && v !== null) fields[k] = v;
      out.set(id, { entity: op.entity, id, org_unit: String(set.org_unit || ''), version: 0, fields, pending: true, rejected: false });
    }
  }
  return out;
}

/**
 * What to do with a whole-request HTTP failure.
 * @param {number} status
 * @param {{code?: string, details?: Partial<Limits>}|null} body  problem+json
 * @param {string|null} retryAfterHeader
 * @returns {{action: 'refresh'|'revoked'|'split'|'wait'|'fail', waitSeconds?: number}}
 */
export function classifyFailure(status, body, retryAfterHeader) {
  if (status === 401) return { action: 'refresh' };
  if (status === 403) return { action: 'revoked' };
  if (status === 413) return { action: 'split' };
  if (status === 429 || status === 503 || status === 507) {
    const n = Number.parseInt(retryAfterHeader || '', 10);
    return { action: 'wait', waitSeconds: Number.isFinite(n) && n >= 0 ? n : 5 };
  }
  return { action: 'fail' };
}

/**
 * The wait before the next attempt after `attempt` failed ones: the server's Retry-After when it
 * gave one, else exponential from 2 s to 5 minutes, with jitter so phones do not come back at once.
 * @param {number} attempt  1 for the first retry
 * @param {number|undefined} retryAfter seconds
 * @param {number} random  in [0, 1)
 */
export function backoffSeconds(attempt, retryAfter, random) {
  if (retryAfter !== undefined) return retryAfter + random;
  const base = Math.min(300, 2 ** Math.min(attempt, 9));
  return base / 2 + (base / 2) * random;
}
