// The engine against the fake server, with a memory store standing for IndexedDB. A "closed
// tab" is a new engine opened on the same store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncEngine, SyncError } from '../engine.js';
import { MemoryStore } from '../memstore.js';
import { FakeServer } from './fakeserver.js';

const V = '130131100201';

function setup(opts = {}) {
  const server = new FakeServer(opts);
  const store = new MemoryStore();
  const slept = [];
  let n = 0;
  const make = () =>
    new SyncEngine({
      store,
      transport: server.transport(),
      now: () => '2026-11-23T09:00:00+08:00',
      uuid: () => `00000000-0000-7000-8000-${String(++n).padStart(12, '0')}`,
      sleep: async (ms) => void slept.push(ms),
      random: () => 0,
    });
  return { server, store, slept, make };
}

async function signedIn(opts) {
  const s = setup(opts);
  const e = await s.make().open();
  await e.signIn('w' + V, 'pw', 'phone A');
  return { ...s, e };
}

const person = (name, extra = {}) => ({ entity: 'person', kind: 'create', set: { org_unit: V, name, sex: 'female', birth_date: '1990-01-01', ...extra } });

test('sign-in registers the phone once and keeps the scope', async () => {
  const { e, server } = await signedIn();
  assert.equal(e.state.meta.auth.device_id, 'd1');
  assert.deepEqual(e.state.meta.scope, [V]);
  assert.equal(server.requests.filter((r) => r.path === '/api/v1/devices').length, 1);
});

test('every op has its seq and is durable before any network', async () => {
  const { e, store, server } = await signedIn();
  const before = server.requests.length;
  await e.record(person('王秀兰'));
  await e.record(person('刘佳兰'));
  assert.equal(server.requests.length, before);
  assert.deepEqual(store.data.ops.map((o) => o.seq), [1, 2]);
  assert.equal(store.data.meta.next_seq, 3);
});

test('a second edit of a record not yet sent is folded into its op; after sending it gets the acknowledged version as base', async () => {
  const { e } = await signedIn();
  const p = await e.record(person('王秀兰'));
  await e.record({ entity: 'person', id: p.id, kind: 'update', set: { phone: '139' } });
  assert.equal(e.state.ops.length, 1);
  assert.equal(e.state.ops[0].set.phone, '139');
  await e.sync();
  const u = await e.record({ entity: 'person', id: p.id, kind: 'update', set: { phone: '138' } });
  assert.equal(u.seq, 2);
  assert.equal(u.base_version, 1);
});

test('an answer lost and the tab closed: the same batch is resent unchanged and applied once', async () => {
  const { e, server, make } = await signedIn();
  for (let i = 0; i < 5; i++) await e.record(person(`p${i}`));
  server.loseNextAnswer = true;
  await assert.rejects(e.sync(), (err) => err instanceof SyncError && err.code === 'offline');
  const sent = server.requests.filter((r) => r.path === '/api/v1/sync/push').map((r) => r.body.ops);
  const e2 = await make().open();
  await e2.record(person('later'));
  await e2.sync();
  const pushes = server.requests.filter((r) => r.path === '/api/v1/sync/push').map((r) => r.body.ops);
  assert.deepEqual(pushes[1], sent[0], 'resent unchanged');
  assert.deepEqual(pushes[2].map((o) => o.seq), [6]);
  assert.deepEqual(server.applied, [1, 2, 3, 4, 5, 6]);
  assert.equal(e2.unacked().length, 0);
  assert.equal(e2.view().size, 6);
});

test('a commit that fails after the answer leaves the ops unacknowledged, and the resend is answered as duplicates', async () => {
  const { e, server, store, make } = await signedIn();
  await e.record(person('a'));
  const orig = store.commit.bind(store);
  let calls = 0;
  store.commit = async (c) => {
    if (c.putOps && c.putOps.some((o) => o.result) && calls++ === 0) throw new Error('tab closed');
    return orig(c);
  };
  await assert.rejects(e.sync());
  store.commit = orig;
  const e2 = await make().open();
  const summary = await e2.sync();
  assert.equal(summary.applied, 1);
  assert.equal(e2.state.ops[0].result.status, 'duplicate');
  assert.deepEqual(server.applied, [1]);
});

test('413: the batch is split within the limits the server sent', async () => {
  const { e, server } = await signedIn({ maxOps: 2 });
  for (let i = 0; i < 5; i++) await e.record(person(`p${i}`));
  await e.sync();
  assert.deepEqual(server.applied, [1, 2, 3, 4, 5]);
  assert.equal(e.state.meta.limits.max_ops_per_batch, 2);
  const pushes = server.requests.filter((r) => r.path === '/api/v1/sync/push').map((r) => r.body.ops.length);
  assert.deepEqual(pushes, [5, 2, 2, 1]);
});

test('503 and 429 are waited out by Retry-After', async () => {
  const { e, server, slept } = await signedIn();
  await e.record(person('a'));
  server.failures.push({ status: 503, retryAfter: '7' }, { status: 429, retryAfter: '2' });
  await e.sync();
  assert.deepEqual(slept, [7000, 2000]);
  assert.deepEqual(server.applied, [1]);
});

test('401: the token is refreshed once, the new refresh token stored, and the call repeated', async () => {
  const { e, server, store } = await signedIn();
  await e.record(person('a'));
  server.accessToken = 'rotated';
  await e.sync();
  assert.equal(store.data.meta.auth.refresh_token, server.refreshToken);
  assert.deepEqual(server.applied, [1]);
});

test('403: a revoked phone stops, keeps its unsent ops and says so', async () => {
  const { e, server, store } = await signedIn();
  await e.record(person('a'));
  server.failures.push({ status: 403, body: { code: 'device_revoked' } });
  await assert.rejects(e.sync(), (err) => err.code === 'revoked' && err.extra.unsent === 1);
  assert.equal(store.data.meta.revoked, true);
  assert.equal(store.data.ops.length, 1);
  const pushes = server.requests.filter((r) => r.path === '/api/v1/sync/push').length;
  await assert.rejects(e.sync(), (err) => err.code === 'revoked');
  assert.equal(server.requests.filter((r) => r.path === '/api/v1/sync/push').length, pushes);
});

test('a gap: ops the server lacks are sent again from its last_seq + 1', async () => {
  const { e, server } = await signedIn();
  await e.record(person('a'));
  await e.record(person('b'));
  await e.sync();
  // The server was restored from a backup taken after seq 1.
  server.lastSeq = 1;
  server.ledger.delete(2);
  await e.record(person('c'));
  await e.sync();
  assert.deepEqual(server.applied, [1, 2, 2, 3]);
  assert.equal(e.unacked().length, 0);
});

test('a transient stop resends the rest after retry_after', async () => {
  const { e, server, slept } = await signedIn();
  for (let i = 0; i < 3; i++) await e.record(person(`p${i}`));
  const push = server.push.bind(server);
  server.push = (ops) => {
    server.push = push;
    const r = push(ops.slice(0, 1));
    return { ...r, stopped_at: 2, stop_reason: 'transient', retry_after: 3 };
  };
  await e.sync();
  assert.deepEqual(slept, [3000]);
  assert.deepEqual(server.applied, [1, 2, 3]);
});

test('redirected: local children re-point to the survivor, unsent ops too', async () => {
  const { e, server } = await signedIn();
  server.put({ entity: 'person', id: 'survivor', org_unit: V, version: 1, deleted: false, fields: { name: '王秀兰' } });
  await e.sync();
  const dup = await e.record(person('王秀兰'));
  await e.sync();
  server.merge(dup.id, 'survivor');
  const visit = await e.record({ entity: 'visit', kind: 'create', set: { org_unit: V, person_id: dup.id, kind: 'iud_check' } });
  await e.record({ entity: 'person', id: dup.id, kind: 'update', set: { phone: '139' } });
  // The pull sees the tombstone before the unsent visit is pushed on the next round.
  await e.pullAll({ sent: 0, applied: 0, review: 0, flagged: 0, rejected: [], pages: 0, reset: false });
  assert.equal(e.state.ops.find((o) => o.id === visit.id).set.person_id, 'survivor');
  await e.sync();
  assert.equal(server.records.get(visit.id).fields.person_id, 'survivor');
  assert.equal(server.records.get('survivor').fields.phone, '139');
  const v = e.view();
  assert.equal(v.has(dup.id), false);
  assert.equal(v.get('survivor').fields.phone, '139');
  assert.equal(v.get(visit.id).fields.person_id, 'survivor');
});

test('a record that left the scope is dropped from the phone', async () => {
  const { e, server } = await signedIn();
  server.put({ entity: 'household', id: 'h1', org_unit: V, version: 1, deleted: false, fields: { household_no: '1' } });
  await e.sync();
  assert.equal(e.view().size, 1);
  server.put({ entity: 'household', id: 'h1', org_unit: '130131100299', version: 2, deleted: false, fields: { household_no: '1' } });
  await e.sync();
  assert.equal(e.view().size, 0);
});

test('reset_required: a fresh snapshot, then the unsent ops are pushed', async () => {
  const { e, server } = await signedIn();
  server.put({ entity: 'household', id: 'h1', org_unit: V, version: 1, deleted: false, fields: { household_no: '1' } });
  await e.sync();
  await e.commit({ putRecords: [{ entity: 'household', id: 'stale', org_unit: V, version: 1, deleted: false, fields: {}, change_seq: 1 }] });
  server.resetNext = true;
  await e.record(person('a'));
  const summary = await e.sync();
  assert.equal(summary.reset, true);
  assert.equal(e.records.has('stale'), false);
  assert.equal(e.records.has('h1'), true);
  assert.equal(e.unacked().length, 0);
  assert.equal(e.view().size, 2);
});

test('conflicts from push answers are kept and counted for review; rejections are listed', async () => {
  const { e, server } = await signedIn();
  server.put({ entity: 'pregnancy', id: 'pg', org_unit: V, version: 1, deleted: false, fields: { status: 'ongoing' } });
  await e.sync();
  server.put({ entity: 'pregnancy', id: 'pg', org_unit: V, version: 2, deleted: false, fields: { status: 'ended' } });
  await e.record({ entity: 'pregnancy', id: 'pg', kind: 'update', set: { status: 'ongoing2' } });
  await e.record({ entity: 'household', kind: 'create', set: { org_unit: '999', household_no: '9' } });
  const summary = await e.sync();
  assert.equal(summary.review, 1);
  assert.equal(summary.rejected.length, 1);
  assert.equal(summary.rejected[0].code, 'out_of_scope');
  assert.equal(e.state.conflicts.length, 1);
  assert.equal(e.state.conflicts[0].device_value, 'ongoing2');
  assert.equal(e.view().get('pg').fields.status, 'ended');
});

test('sign-out pushes first; offline with unsent ops it refuses unless told to discard, then wipes', async () => {
  const { e, server, store } = await signedIn();
  await e.record(person('a'));
  server.failures.push({ status: 503, retryAfter: '1' }, { status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }, { status: 503 });
  await assert.rejects(e.signOut(), (err) => err.code === 'busy');
  assert.equal(store.data.ops.length, 1);
  server.failures = [];
  await e.signOut();
  assert.deepEqual(server.applied, [1]);
  assert.equal(store.data.ops.length, 0);
  assert.equal(e.signedIn, false);
});

test('sign-out with discard wipes unsent ops', async () => {
  const { e, server, store } = await signedIn();
  await e.record(person('a'));
  server.failures = Array(20).fill({ status: 503, retryAfter: '1' });
  await e.signOut({ discardUnsent: true });
  assert.equal(store.data.ops.length, 0);
});

test('reset after the worker\'s villages changed: an op on the old village is rejected, the new village is downloaded, the old one dropped', async () => {
  const { e, server } = await signedIn();
  server.put({ entity: 'household', id: 'old', org_unit: V, version: 1, deleted: false, fields: { household_no: '1' } });
  server.put({ entity: 'household', id: 'new', org_unit: '130131100202', version: 1, deleted: false, fields: { household_no: '2' } });
  await e.sync();
  assert.deepEqual([...e.view().keys()], ['old']);
  await e.record({ entity: 'household', id: 'old', kind: 'update', set: { address: 'x' } });
  server.scope = ['130131100202'];
  server.resetNext = true;
  const summary = await e.sync();
  assert.equal(summary.reset, true);
  assert.deepEqual(summary.rejected.map((r) => r.code), ['out_of_scope']);
  assert.deepEqual(e.state.meta.scope, ['130131100202']);
  assert.deepEqual([...e.view().keys()], ['new']);
});
