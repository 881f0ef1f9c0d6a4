// fieldsync's device-side client: import this module, nothing else.
//
//   import { openClient } from '/client/index.js';
//   const client = await openClient();          // IndexedDB 'fieldsync', same-origin server
//   await client.signIn('w130131100201', password, '红米 Note 12');
//   await client.record({ entity: 'visit', kind: 'create', set: { org_unit, person_id, kind: 'iud_check', visit_date } });
//   const summary = await client.sync();
//
// See docs/client.md for the lifecycle.

import { SyncEngine } from './engine.js';
import { IdbStore } from './idbstore.js';
import { fetchTransport } from './http.js';

export { SyncEngine, SyncError, localNow, uuidv7 } from './engine.js';
export { MemoryStore } from './memstore.js';
export { IdbStore } from './idbstore.js';
export { fetchTransport } from './http.js';
export * as core from './core.js';

/**
 * Opens the client on IndexedDB and the page's own server.
 * @param {{dbName?: string, base?: string, onProgress?: (p: import('./engine.js').Progress) => void}} [opts]
 */
export async function openClient(opts = {}) {
  const engine = new SyncEngine({
    store: new IdbStore(opts.dbName || 'fieldsync'),
    transport: fetchTransport(opts.base || ''),
    onProgress: opts.onProgress,
  });
  return engine.open();
}
