// A store adapter in memory, with the same atomic commit as the IndexedDB one: for tests and
// for apps that bring their own persistence. `snapshot()`/`from()` stand for a closed tab: a new
// engine opened on the same data sees exactly what was committed.

/**
 * @typedef {import('./engine.js').State} State
 * @typedef {import('./engine.js').Store} Store
 */

/** @implements {Store} */
export class MemoryStore {
  /** @param {State} [state] */
  constructor(state) {
    /** @type {State} */
    this.data = state ? structuredClone(state) : { meta: /** @type {any} */ ({}), ops: [], records: [], conflicts: [] };
    /** Set to make the next commit fail (a crash before the write reached the disk). */
    this.failNextCommit = false;
  }

  async load() {
    return structuredClone(this.data);
  }

  /** @param {import('./core.js').Changes} changes */
  async commit(changes) {
    if (this.failNextCommit) {
      this.failNextCommit = false;
      throw new Error('commit failed');
    }
    const next = structuredClone(this.data);
    if (changes.meta) next.meta = { ...next.meta, ...structuredClone(changes.meta) };
    if (changes.clearRecords) next.records = [];
    const records = new Map(next.records.map((r) => [r.id, r]));
    for (const id of changes.deleteRecords || []) records.delete(id);
    for (const r of changes.putRecords || []) records.set(r.id, structuredClone(r));
    next.records = [...records.values()];
    const ops = new Map(next.ops.map((o) => [o.seq, o]));
    for (const o of changes.putOps || []) ops.set(o.seq, structuredClone(o));
    next.ops = [...ops.values()].sort((a, b) => a.seq - b.seq);
    const conflicts = new Map(next.conflicts.map((c) => [c.id, c]));
    for (const c of changes.putConflicts || []) conflicts.set(c.id, structuredClone(c));
    next.conflicts = [...conflicts.values()];
    this.data = next;
  }

  async wipe() {
    this.data = { meta: /** @type {any} */ ({}), ops: [], records: [], conflicts: [] };
  }
}
