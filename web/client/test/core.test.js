// The pure plans of core.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonical, freshMeta, planBatch, planChange, planPage, view } from '../core.js';

const op = (seq, extra = {}) => ({ seq, op_id: `o${seq}`, entity: 'person', id: `p${seq}`, kind: 'create', set: { org_unit: 'V', name: 'x'.repeat(100) }, recorded_at: 't', sent: false, ...extra });

test('a batch stays within the op count and the body size', () => {
  const meta = { ...freshMeta(), limits: { max_ops_per_batch: 3, max_body_bytes: 100000 } };
  const ops = [1, 2, 3, 4, 5].map((s) => op(s));
  assert.deepEqual(planBatch(meta, ops).ops.map((o) => o.seq), [1, 2, 3]);
  const small = { ...meta, limits: { max_ops_per_batch: 100, max_body_bytes: 700 } };
  const b = planBatch(small, ops);
  assert.ok(b.ops.length >= 1 && b.ops.length < 5);
  assert.ok(JSON.stringify({ ops: b.ops }).length < 700);
});

test('one op larger than the body limit still goes alone (the server answers it)', () => {
  const meta = { ...freshMeta(), limits: { max_ops_per_batch: 10, max_body_bytes: 10 } };
  assert.deepEqual(planBatch(meta, [op(1), op(2)]).ops.map((o) => o.seq), [1]);
});

test('the batch in flight is planned again, whatever the limits are now', () => {
  const meta = { ...freshMeta(), inflight: { from: 2, to: 4 }, limits: { max_ops_per_batch: 1, max_body_bytes: 10 } };
  const ops = [2, 3, 4, 5].map((s) => op(s, { sent: s <= 4 }));
  assert.deepEqual(planBatch(meta, ops).ops.map((o) => o.seq), [2, 3, 4]);
});

test('seqs are consecutive and a delete carries the known base version', () => {
  const meta = freshMeta();
  const a = planChange(meta, { entity: 'person', id: 'p', kind: 'create', set: { name: 'a' } }, { ops: [], now: 't', opId: 'o' });
  assert.equal(a.op.seq, 1);
  const record = { entity: 'person', id: 'q', org_unit: 'V', version: 4, deleted: false, fields: {}, change_seq: 1 };
  const d = planChange({ ...meta, ...a.meta }, { entity: 'person', id: 'q', kind: 'delete' }, { record, ops: [], now: 't', opId: 'o2' });
  assert.equal(d.op.seq, 2);
  assert.equal(d.op.base_version, 4);
});

test('redirect chains end at the last survivor', () => {
  assert.equal(canonical({ a: 'b', b: 'c' }, 'a'), 'c');
  assert.equal(canonical({}, 'a'), 'a');
});

test('own ops not yet in a pull are laid over the server copy; older ones and rejected ones are not', () => {
  const meta = { ...freshMeta(), snapshot_last_seq: 1 };
  const records = [{ entity: 'person', id: 'p', org_unit: 'V', version: 2, deleted: false, fields: { name: 'server' }, change_seq: 5 }];
  const ops = [
    { ...op(1), id: 'p', kind: 'update', set: { name: 'old' } },
    { ...op(2), id: 'p', kind: 'update', set: { phone: '1' } },
    { ...op(3), id: 'p', kind: 'update', set: { name: 'bad' }, result: { seq: 3, op_id: 'o3', status: 'rejected', entity: 'person', id: 'p' } },
  ];
  const v = view(meta, records, ops).get('p');
  assert.deepEqual(v.fields, { name: 'server', phone: '1' });
  assert.equal(v.pending, true);
  assert.equal(v.rejected, true);
});

test('a page: older versions never replace newer ones; a merge tombstone redirects and re-points', () => {
  const meta = { ...freshMeta(), scope: ['V'] };
  const local = new Map([
    ['p', { entity: 'person', id: 'p', org_unit: 'V', version: 3, deleted: false, fields: { name: 'new' }, change_seq: 9 }],
    ['v', { entity: 'visit', id: 'v', org_unit: 'V', version: 1, deleted: false, fields: { person_id: 'dup' }, change_seq: 4 }],
  ]);
  const page = {
    records: [
      { entity: 'person', id: 'p', org_unit: 'V', version: 2, deleted: false, fields: { name: 'old' }, change_seq: 10 },
      { entity: 'person', id: 'dup', org_unit: 'V', version: 2, deleted: true, merged_into: 'p', fields: {}, change_seq: 11 },
    ],
    conflicts: [], last_seq: 7, next_cursor: 11, has_more: false, reset_required: false,
  };
  const plan = planPage(meta, local, page);
  assert.deepEqual(plan.changes.deleteRecords, ['dup']);
  assert.deepEqual(plan.changes.putRecords.map((r) => [r.id, r.fields.person_id]), [['v', 'p']]);
  assert.deepEqual(plan.changes.meta, { cursor: 11, snapshot_last_seq: 7, redirects: { dup: 'p' } });
});
