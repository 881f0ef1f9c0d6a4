// The store adapter over IndexedDB: one database per app, four object stores, and every commit
// in one readwrite transaction (all of it is on disk, or none of it). Plain IndexedDB with a
// few promise helpers: the adapter needs four operations, which a wrapper library would not
// make shorter.

/**
 * @typedef {import('./engine.js').State} State
 * @typedef {import('./engine.js').Store} Store
 */

const VERSION = 1;
const STORES = ['meta', 'ops', 'records', 'conflicts'];

/**
 * @template T
 * @param {IDBRequest<T>} req
 * @returns {Promise<T>}
 */
function done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {IDBTransaction} tx */
function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(undefined);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
    tx.onerror = () => reject(tx.error);
  });
}

/** @implements {Store} */
export class IdbStore {
  /** @param {string} name  the database name, e.g. `fieldsync` */
  constructor(name) {
    this.name = name;
    /** @type {Promise<IDBDatabase>|null} */
    this.db = null;
  }

  /** @returns {Promise<IDBDatabase>} */
  open() {
    if (!this.db) {
      const req = indexedDB.open(this.name, VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        db.createObjectStore('meta');
        db.createObjectStore('ops', { keyPath: 'seq' });
        db.createObjectStore('records', { keyPath: 'id' });
        db.createObjectStore('conflicts', { keyPath: 'id' });
      };
      this.db = done(req);
    }
    return this.db;
  }

  /** @returns {Promise<State>} */
  async load() {
    const db = await this.open();
    const tx = db.transaction(STORES, 'readonly');
    const [meta, ops, records, conflicts] = await Promise.all([
      done(tx.objectStore('meta').get('meta')),
      done(tx.objectStore('ops').getAll()),
      done(tx.objectStore('records').getAll()),
      done(tx.objectStore('conflicts').getAll()),
    ]);
    return { meta: meta || {}, ops, records, conflicts };
  }

  /** @param {import('./core.js').Changes} changes */
  async commit(changes) {
    const db = await this.open();
    const tx = db.transaction(STORES, 'readwrite', { durability: 'strict' });
    const end = finished(tx);
    if (changes.meta) {
      const metaStore = tx.objectStore('meta');
      const patch = changes.meta;
      const get = metaStore.get('meta');
      get.onsuccess = () => metaStore.put({ ...(get.result || {}), ...patch }, 'meta');
    }
    const records = tx.objectStore('records');
    if (changes.clearRecords) records.clear();
    for (const id of changes.deleteRecords || []) records.delete(id);
    for (const r of changes.putRecords || []) records.put(r);
    for (const o of changes.putOps || []) tx.objectStore('ops').put(o);
    for (const c of changes.putConflicts || []) tx.objectStore('conflicts').put(c);
    await end;
  }

  async wipe() {
    const db = await this.open();
    const tx = db.transaction(STORES, 'readwrite', { durability: 'strict' });
    const end = finished(tx);
    for (const s of STORES) tx.objectStore(s).clear();
    await end;
  }
}
