// The server's logic checks (src/domain/checks.rs), run on the phone as the worker types, so
// mistakes are seen while the family is still there. They only warn: the server stores the
// record anyway and flags it for the supervisor, and so does the app.

/** @typedef {Record<string, unknown>} Fields */

export const MOTHER_MIN_AGE = 15;
export const MOTHER_MAX_AGE = 55;
export const PREGNANCY_OVERDUE_DAYS = 30;
const FEMALE_ONLY_METHODS = ['iud_insertion', 'iud_removal', 'tubal_ligation', 'implant'];
const MALE_ONLY_METHODS = ['vasectomy'];
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS = '10X98765432';

/** Messages as the server words them (src/domain/checks.rs). */
export const MESSAGES = {
  id_check_digit: '身份证号校验码错误或格式不符',
  id_birth_date: '身份证号中的出生日期与出生日期不符',
  id_sex: '身份证号的性别位与性别不符',
  mother_age: '母亲生育时不满15周岁或超过55周岁',
  mother_sex: '母亲(孕妇)性别不是女',
  birth_parity: '孩次与母亲此前生育数不符',
  method_sex: '节育措施与性别不符',
  after_death: '记录日期晚于死亡日期',
  death_before_birth: '死亡日期早于出生日期',
  pregnancy_overdue: '超过预产期30天仍无孕情结果',
  marriage_before_birth: '婚姻变动日期早于出生日期',
};

/**
 * The ISO 7064 MOD 11-2 check character of 17 digits, or null.
 * @param {string} first17
 */
export function checkDigit(first17) {
  if (!/^[0-9]{17}$/.test(first17)) return null;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * WEIGHTS[i];
  return CHECK_CHARS[sum % 11];
}

/**
 * A valid ID number's birth date and sex, or null when the number is malformed or its check
 * character is wrong.
 * @param {string} s
 * @returns {{birthDate: string|null, sex: 'male'|'female'}|null}
 */
export function parseResidentId(s) {
  if (s.length !== 18 || !/^[\x00-\x7f]*$/.test(s)) return null;
  const n = s.toUpperCase();
  const expected = checkDigit(n.slice(0, 17));
  if (!expected || n[17] !== expected) return null;
  const y = Number(n.slice(6, 10));
  const m = Number(n.slice(10, 12));
  const d = Number(n.slice(12, 14));
  const dt = new Date(Date.UTC(y, m - 1, d));
  const ok = dt.getUTCFullYear() === y && dt.getUTCMonth() === m - 1 && dt.getUTCDate() === d;
  return { birthDate: ok ? n.slice(6, 10) + '-' + n.slice(10, 12) + '-' + n.slice(12, 14) : null, sex: Number(n[16]) % 2 === 1 ? 'male' : 'female' };
}

/** @param {Fields} f @param {string} k */
function text(f, k) {
  const v = f && f[k];
  return typeof v === 'string' && v !== '' ? v : null;
}

/** @param {Fields} f @param {string} k */
function date(f, k) {
  const v = text(f, k);
  return v && /^\d{4}-\d{2}-\d{2}$/.test(v) ? v : null;
}

/**
 * Whole years from `born` to `on`.
 * @param {string} born  YYYY-MM-DD
 * @param {string} on    YYYY-MM-DD
 */
export function ageOn(born, on) {
  let years = Number(on.slice(0, 4)) - Number(born.slice(0, 4));
  if (on.slice(5) < born.slice(5)) years -= 1;
  return years;
}

/** @param {string} a @param {string} b  days from a to b */
function daysBetween(a, b) {
  return Math.round((Date.parse(b + 'T00:00:00Z') - Date.parse(a + 'T00:00:00Z')) / 86400000);
}

/**
 * @typedef {object} CheckContext
 * @property {string} today                 YYYY-MM-DD
 * @property {Fields} [subject]             the person the record is about (person_id or mother_id)
 * @property {string|null} [subjectDeathDate] date of the subject's death record (for a person: theirs)
 * @property {number|null} [earlierBirths]  for a birth: the mother's other births dated earlier
 */

/**
 * The checks a record fails, as the server would flag them.
 * @param {string} entity
 * @param {Fields} fields  the record after the edit
 * @param {CheckContext} ctx
 * @returns {{code: keyof typeof MESSAGES, zh: string}[]}
 */
export function runChecks(entity, fields, ctx) {
  /** @type {(keyof typeof MESSAGES)[]} */
  const out = [];
  const subject = ctx.subject || {};
  if (entity === 'person') {
    const idn = text(fields, 'id_number');
    if (idn) {
      const id = parseResidentId(idn);
      if (!id) out.push('id_check_digit');
      else {
        const b = date(fields, 'birth_date');
        if (b && id.birthDate !== b) out.push('id_birth_date');
        const sex = text(fields, 'sex');
        if ((sex === 'male' || sex === 'female') && id.sex !== sex) out.push('id_sex');
      }
    }
  }
  if (entity === 'birth') {
    const mb = date(subject, 'birth_date');
    const b = date(fields, 'birth_date');
    if (mb && b) {
      const age = ageOn(mb, b);
      if (age < MOTHER_MIN_AGE || age > MOTHER_MAX_AGE) out.push('mother_age');
    }
  }
  if ((entity === 'birth' || entity === 'pregnancy') && text(subject, 'sex') === 'male') out.push('mother_sex');
  if (entity === 'birth') {
    const parity = fields.parity;
    if (typeof parity === 'number' && typeof ctx.earlierBirths === 'number' && parity !== ctx.earlierBirths + 1) out.push('birth_parity');
  }
  if (entity === 'measure') {
    const method = text(fields, 'method');
    const sex = text(subject, 'sex');
    if (method && ((sex === 'female' && MALE_ONLY_METHODS.includes(method)) || (sex === 'male' && FEMALE_ONLY_METHODS.includes(method)))) out.push('method_sex');
  }
  const death = ctx.subjectDeathDate;
  if (death) {
    /** @type {Record<string, string[]>} */
    const dated = { visit: ['visit_date'], measure: ['started_on'], supply: ['handed_on'], pregnancy: ['detected_on', 'outcome_date'], birth: ['birth_date'], migration: ['moved_on'] };
    if ((dated[entity] || []).some((k) => { const d = date(fields, k); return d !== null && d > death; })) out.push('after_death');
  }
  {
    let d = null;
    let b = null;
    if (entity === 'death') {
      d = date(fields, 'death_date');
      b = date(subject, 'birth_date');
    } else if (entity === 'person') {
      d = death || null;
      b = date(fields, 'birth_date');
    }
    if (d && b && d < b) out.push('death_before_birth');
  }
  if (entity === 'pregnancy') {
    const expected = date(fields, 'expected_date');
    const unresolved = text(fields, 'status') === 'ongoing' || !text(fields, 'outcome');
    if (expected && unresolved && daysBetween(expected, ctx.today) > PREGNANCY_OVERDUE_DAYS) out.push('pregnancy_overdue');
  }
  if (entity === 'person') {
    const m = date(fields, 'marriage_date');
    const b = date(fields, 'birth_date');
    if (m && b && m < b) out.push('marriage_before_birth');
  }
  return out.map((code) => ({ code, zh: MESSAGES[code] }));
}
