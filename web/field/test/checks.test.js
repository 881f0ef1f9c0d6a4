// The phone's warnings agree with the server's checks on the same cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDigit, parseResidentId, runChecks } from '../checks.js';

const codes = (entity, fields, ctx = {}) => runChecks(entity, fields, { today: '2024-06-30', ...ctx }).map((c) => c.code);

test('check digit, birth date and sex from the ID number', () => {
  // The example of docs/sync.md.
  assert.equal(checkDigit('13013119940512002'), '8');
  assert.deepEqual(parseResidentId('130131199405120028'), { birthDate: '1994-05-12', sex: 'female' });
  assert.equal(parseResidentId('130131199405120027'), null);
  const p = { name: '王秀兰', sex: 'female', birth_date: '1994-05-12', id_number: '130131199405120028' };
  assert.deepEqual(codes('person', p), []);
  assert.deepEqual(codes('person', { ...p, id_number: '130131199405120027' }), ['id_check_digit']);
  assert.deepEqual(codes('person', { ...p, birth_date: '1994-05-13' }), ['id_birth_date']);
  assert.deepEqual(codes('person', { ...p, sex: 'male' }), ['id_sex']);
});

test('mother age, sex and parity at a birth', () => {
  const mother = { sex: 'female', birth_date: '2000-07-01' };
  assert.deepEqual(codes('birth', { birth_date: '2015-06-30', parity: 1 }, { subject: mother, earlierBirths: 0 }), ['mother_age']);
  assert.deepEqual(codes('birth', { birth_date: '2015-07-01', parity: 1 }, { subject: mother, earlierBirths: 0 }), []);
  assert.deepEqual(codes('birth', { birth_date: '2020-01-01', parity: 1 }, { subject: mother, earlierBirths: 1 }), ['birth_parity']);
  assert.deepEqual(codes('pregnancy', { status: 'ongoing' }, { subject: { sex: 'male' } }), ['mother_sex']);
});

test('method and sex, dates after death, death before birth, overdue pregnancy, marriage before birth', () => {
  assert.deepEqual(codes('measure', { method: 'vasectomy' }, { subject: { sex: 'female' } }), ['method_sex']);
  assert.deepEqual(codes('measure', { method: 'iud_insertion' }, { subject: { sex: 'male' } }), ['method_sex']);
  assert.deepEqual(codes('visit', { visit_date: '2024-02-02' }, { subjectDeathDate: '2024-02-01' }), ['after_death']);
  assert.deepEqual(codes('death', { death_date: '1989-12-31' }, { subject: { birth_date: '1990-01-01' } }), ['death_before_birth']);
  assert.deepEqual(codes('pregnancy', { status: 'ongoing', expected_date: '2024-05-30' }), ['pregnancy_overdue']);
  assert.deepEqual(codes('pregnancy', { status: 'ongoing', expected_date: '2024-05-31' }), []);
  assert.deepEqual(codes('person', { birth_date: '1990-01-01', marriage_date: '1989-01-01' }), ['marriage_before_birth']);
});
