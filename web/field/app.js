// The field app: one village officer's ledgers on the phone, offline all day, synced at day's
// end. Every screen is drawn from the client's local state; every save is a durable op before
// the screen moves on, so closing the tab at any point loses nothing.

import { openClient, SyncError, localNow } from '/client/index.js';
import { SCHEMA } from './schema.js';
import { runChecks } from './checks.js';

/** @typedef {import('/client/engine.js').SyncEngine} SyncEngine */
/** @typedef {import('/client/core.js').LocalRecord} LocalRecord */
/** @typedef {(typeof SCHEMA.entities)[number]} EntityDef */
/** @typedef {EntityDef['fields'][number]} FieldDef */

/** @type {Record<string, EntityDef>} */
const ENT = Object.fromEntries(SCHEMA.entities.map((e) => [e.name, e]));

/** Rejection codes (docs/sync.md) in Chinese. */
const REJECTED_ZH = {
  unknown_entity: '未知的记录类型',
  unknown_kind: '未知的操作',
  bad_id: '记录编号格式错误',
  bad_op_id: '操作编号格式错误',
  unknown_op_field: '操作含未知项',
  bad_set: '字段内容格式错误',
  unknown_field: '含未知字段',
  server_owned_field: '含系统字段',
  bad_field_value: '字段值不合规定',
  required_field: '缺少必填项',
  empty_update: '修改内容为空',
  bad_recorded_at: '记录时间格式错误',
  bad_base_version: '记录版本不符',
  bad_org_unit: '村/组代码格式错误',
  unknown_org_unit: '村/组代码不存在',
  out_of_scope: '不属于本人负责的村',
  unknown_record: '服务器上没有这条记录（可能新建未成功）',
  storage_rejected: '服务器拒绝保存',
};

const CONFLICT_STATUS_ZH = { open: '待乡镇审核', closed: '已按规则处理', resolved: '已解决' };

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const statusBox = /** @type {HTMLElement} */ (document.getElementById('sync-status'));
const syncButton = /** @type {HTMLButtonElement} */ (document.getElementById('sync'));

/** @type {SyncEngine} */
let client;
let syncing = false;

/**
 * The code of an enrolment link (`/field/#enrol=CODE`, the QR code the console shows when an
 * administrator registers this phone): taken out of the address at once, so it stays neither
 * in the history nor in the address bar, and filled into the enrolment form.
 * @returns {string}
 */
function takeEnrolCode() {
  const m = location.hash.match(/^#enrol=([^&/?]+)/);
  if (!m) return '';
  history.replaceState(null, '', location.pathname + location.search);
  try {
    return decodeURIComponent(m[1]).trim();
  } catch {
    return '';
  }
}
const linkedCode = takeEnrolCode();

/** @typedef {Node|string|null|undefined|false} Leaf */
/** @typedef {Leaf|Leaf[]|Leaf[][]} Child */

/**
 * Builds an element. Text goes in as text nodes, never as HTML.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') /** @type {any} */ (el).value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of /** @type {Leaf[]} */ (children.flat(Infinity))) {
    if (c !== null && c !== undefined && c !== false) el.append(c);
  }
  return el;
}

const today = () => localNow().slice(0, 10);

/** @param {LocalRecord|undefined} r */
function label(r) {
  if (!r) return '（未知）';
  const f = r.fields;
  if (r.entity === 'person') return String(f.name || '（无名）');
  if (r.entity === 'household') return `${f.household_no || ''}号户 ${f.head_name || ''}`.trim();
  const who = client.view().get(String(f.person_id || f.mother_id || ''));
  const day = f.visit_date || f.birth_date || f.death_date || f.started_on || f.moved_on || f.handed_on || f.detected_on || f.year || '';
  return `${ENT[r.entity].zh} · ${who ? who.fields.name : ''} ${day}`.trim();
}

/**
 * A field's value as the worker reads it.
 * @param {FieldDef} fd
 * @param {unknown} v
 */
function show(fd, v) {
  if (v === undefined || v === null || v === '') return '—';
  if (fd.type === 'enum') return (fd.choices || []).find((c) => c.value === v)?.zh || String(v);
  if (fd.type === 'bool') return v ? '是' : '否';
  if (fd.type === 'ref') return label(client.view().get(String(v)));
  if (fd.type === 'resident_id') return String(v).replace(/^(.{6}).{8}(.{4})$/, '$1********$2');
  return String(v);
}

function village() {
  const scope = client.state.meta.scope;
  return scope[0] || client.state.meta.auth?.user.org_unit || '';
}

// ---------------------------------------------------------------- boot and header

async function boot() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/field/sw.js', { scope: '/field/' }).catch(() => {});
  }
  window.addEventListener('online', header);
  window.addEventListener('offline', header);
  window.addEventListener('hashchange', render);
  syncButton.addEventListener('click', () => void doSync());
  // One tab at a time holds the log: two would hand out the same seq.
  if (navigator.locks) {
    await navigator.locks.request('fieldsync-field-app', { ifAvailable: true }, async (lock) => {
      if (!lock) {
        main.replaceChildren(h('p', { class: 'err' }, '本应用已在另一个标签页中打开，请关闭本页。'));
        return;
      }
      await start();
      await new Promise(() => {});
    });
  } else {
    await start();
  }
}

async function start() {
  client = await openClient({ onProgress: progress });
  document.body.dataset.ready = '1';
  render();
}

function header() {
  const signed = client && client.signedIn && !client.state.meta.revoked;
  /** @type {HTMLElement} */ (document.getElementById('tabs')).hidden = !signed;
  syncButton.hidden = !signed;
  syncButton.disabled = syncing;
  const v = /** @type {HTMLElement} */ (document.getElementById('village'));
  v.textContent = signed ? `${client.state.meta.auth?.user.username || ''} · ${village()}` : '';
  /** @type {HTMLElement} */ (document.getElementById('net')).textContent = navigator.onLine ? '' : '离线';
  const n = signed ? client.unacked().length : 0;
  const p = /** @type {HTMLElement} */ (document.getElementById('pending'));
  p.textContent = n > 0 ? `未同步 ${n}` : '';
  p.dataset.count = String(n);
  const tab = location.hash.split('/')[0] || '#today';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.getAttribute('href') === tab);
}

/** @param {import('/client/engine.js').Progress} p */
function progress(p) {
  statusBox.textContent = p.phase === 'push' ? `正在上传…已发送 ${p.sent} 条，待发送 ${p.pending} 条` : `正在下载…已下载 ${p.pages} 页`;
}

// ---------------------------------------------------------------- routing

function render() {
  if (!client) return; // a hash change or network event before the local data is loaded
  header();
  if (!client.signedIn) return renderLogin();
  if (client.state.meta.revoked) return renderRevoked();
  const [route, a, b] = location.hash.replace(/^#/, '').split('/');
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  /** @type {HTMLElement} */
  let screen;
  switch (route.split('?')[0]) {
    case 'households': screen = households(); break;
    case 'household': screen = household(a); break;
    case 'persons': screen = persons(); break;
    case 'person': screen = person(a); break;
    case 'new': screen = form(a.split('?')[0], null, params); break;
    case 'edit': screen = form(a, b, params); break;
    case 'conflicts': screen = conflicts(); break;
    case 'me': screen = me(); break;
    default: screen = todayList();
  }
  main.replaceChildren(screen);
  window.scrollTo(0, 0);
}

/** @param {string} hash */
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// ---------------------------------------------------------------- sign in, revoked, sign out

/** @param {string} [note] */
function renderLogin(note) {
  const known = client.state.meta.auth?.user.username || '';
  const msg = h('div', { id: 'login-msg' });
  if (note) msg.append(h('p', { class: 'warn' }, note));
  const f = h('form', { id: 'login' },
    h('h2', {}, '登录'),
    h('label', { for: 'username' }, '用户名'),
    h('input', { id: 'username', name: 'username', autocomplete: 'username', value: known, required: true }),
    h('label', { for: 'password' }, '密码'),
    h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    h('label', { for: 'device' }, '本机名称（首次登录时登记本手机）'),
    h('input', { id: 'device', name: 'device', value: '我的手机', required: true }),
    msg,
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit', id: 'login-submit' }, '登录')),
  );
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const fd = new FormData(/** @type {HTMLFormElement} */ (f));
    msg.replaceChildren(h('p', { class: 'muted' }, '正在登录…'));
    try {
      await client.signIn(String(fd.get('username')).trim(), String(fd.get('password')), String(fd.get('device')).trim());
      await firstSync('登录成功，正在下载本村数据…');
    } catch (e) {
      msg.replaceChildren(h('p', { class: 'err' }, signInError(e)));
    }
  });
  main.replaceChildren(f, renderEnrol());
}

/**
 * After a sign-in or an enrolment: the day's page, and the village downloaded.
 * @param {string} message
 */
async function firstSync(message) {
  statusBox.textContent = message;
  location.hash = '#today';
  render();
  await doSync();
}

/** The other way in: the one-time code an administrator issued for this phone. */
function renderEnrol() {
  const msg = h('div', { id: 'enrol-msg' });
  const f = h('form', { id: 'enrol' },
    h('h2', {}, '用登记码登记本手机'),
    h('p', { class: 'muted' }, '管理员在“用户”页为您登记手机后会给您一个登记码，不需要输入密码。'),
    h('label', { for: 'enrolment-code' }, '登记码'),
    h('input', { id: 'enrolment-code', name: 'code', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true, value: linkedCode }),
    linkedCode ? h('p', { id: 'enrol-linked', class: 'muted' }, '已从登记链接填入登记码，请点击“登记”。') : null,
    msg,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'enrol-submit' }, '登记')),
  );
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const code = String(new FormData(/** @type {HTMLFormElement} */ (f)).get('code')).trim();
    msg.replaceChildren(h('p', { class: 'muted' }, '正在登记…'));
    try {
      await client.enrol(code);
      await firstSync('登记成功，正在下载本村数据…');
    } catch (e) {
      msg.replaceChildren(h('p', { class: 'err' }, enrolError(e)));
    }
  });
  return f;
}

/** @param {unknown} e */
function enrolError(e) {
  if (e instanceof SyncError && Number(e.extra.status) === 401) return '登记码错误、已使用或已过期：请向管理员重新申请。';
  return signInError(e).replace('登录', '登记');
}

/** @param {unknown} e */
function signInError(e) {
  if (!(e instanceof SyncError)) return `登录失败：${e}`;
  if (e.code === 'offline') return '无法连接服务器：首次登录需要网络。';
  if (e.code === 'other_user') return '本机保存着其他人员的数据：请先由该人员退出登录。';
  const status = Number(e.extra.status);
  if (status === 401) return '用户名或密码错误。';
  if (status === 403) return '此账号或本机无权使用（只有村计生专干可登记手机）。';
  if (status === 429) return '尝试次数过多，请稍后再试。';
  return `登录失败（${status || e.code}）。`;
}

function renderRevoked() {
  const n = client.unacked().length;
  main.replaceChildren(h('div', { id: 'revoked' },
    h('h2', {}, '本手机已被停用'),
    h('p', { class: 'err' }, '管理员已停用本手机（例如手机遗失）。已上传的记录都保存在服务器上。'),
    n > 0 ? h('p', { class: 'warn' }, `还有 ${n} 条记录未能上传，将随本机数据一起清除。请在其他手机上重新录入。`) : null,
    h('p', {}, '为保护群众个人信息，点击“确定”后将清除本机上的全部数据。'),
    h('div', { class: 'actions' }, h('button', { class: 'primary', id: 'revoked-ok', onclick: async () => { await client.wipe(); render(); } }, '确定，清除本机数据')),
  ));
}

function me() {
  const auth = client.state.meta.auth;
  const out = h('div', {},
    h('h2', {}, '我的'),
    h('dl', { class: 'fields' },
      h('dt', {}, '用户'), h('dd', {}, auth?.user.username || ''),
      h('dt', {}, '负责村'), h('dd', {}, client.state.meta.scope.join('、')),
      h('dt', {}, '本机编号'), h('dd', {}, auth?.device_id || ''),
      h('dt', {}, '未同步'), h('dd', {}, String(client.unacked().length)),
    ),
  );
  const msg = h('div', {});
  out.append(msg, h('div', { class: 'actions' }, h('button', { class: 'danger', id: 'signout', onclick: () => signOut(msg) }, '退出登录并清除本机数据')));
  return out;
}

/** @param {HTMLElement} msg */
async function signOut(msg) {
  msg.replaceChildren(h('p', { class: 'muted' }, '正在上传未同步的记录…'));
  try {
    await client.signOut();
  } catch (e) {
    const n = client.unacked().length;
    if (n > 0 && !window.confirm(`有 ${n} 条记录尚未上传（${e instanceof SyncError && e.code === 'offline' ? '无网络' : '上传失败'}）。退出将永久丢失这些记录，仍要退出吗？`)) {
      msg.replaceChildren(h('p', { class: 'warn' }, '已取消退出。请联网同步后再退出。'));
      return;
    }
    await client.signOut({ discardUnsent: true });
  }
  statusBox.textContent = '已退出，本机数据已清除。';
  location.hash = '';
  render();
}

// ---------------------------------------------------------------- sync

async function doSync() {
  if (syncing) return;
  syncing = true;
  header();
  statusBox.textContent = '正在同步…';
  try {
    const s = await client.sync();
    const parts = [`同步完成：已保存 ${s.applied} 条`];
    if (s.review > 0) parts.push(`送乡镇审核 ${s.review} 条`);
    if (s.flagged > 0) parts.push(`逻辑提示 ${s.flagged} 条`);
    if (s.rejected.length > 0) parts.push(`被拒绝 ${s.rejected.length} 条`);
    parts.push(`下载 ${s.pages} 页`);
    const box = h('div', { id: 'sync-result', 'data-applied': s.applied, 'data-review': s.review, 'data-rejected': s.rejected.length }, parts.join('，') + '。');
    for (const r of s.rejected) {
      box.append(h('div', { class: 'err' }, `${ENT[r.entity]?.zh || r.entity}：${REJECTED_ZH[/** @type {keyof REJECTED_ZH} */ (r.code)] || r.code}`));
    }
    statusBox.replaceChildren(box);
  } catch (e) {
    const code = e instanceof SyncError ? e.code : 'other';
    if (code === 'revoked') statusBox.textContent = '本手机已被停用。';
    else if (code === 'offline') statusBox.replaceChildren(h('span', { id: 'sync-result', 'data-error': 'offline' }, '无网络：记录都已保存在本机，联网后再同步。'));
    else if (code === 'signed_out') {
      syncing = false;
      renderLogin('登录已过期，请重新输入密码（本机数据保留）。');
      return;
    } else if (code === 'busy') statusBox.textContent = '服务器繁忙，请稍后再同步。';
    else statusBox.textContent = `同步未完成：${e instanceof Error ? e.message : e}`;
  } finally {
    syncing = false;
  }
  render();
}

// ---------------------------------------------------------------- lists

function todayList() {
  const day = today();
  const v = client.view();
  const ops = client.state.ops.filter((o) => o.recorded_at.slice(0, 10) === day).reverse();
  const list = h('ul', { class: 'list', id: 'today-list' });
  for (const op of ops) {
    const rec = v.get(client.state.meta.redirects[op.id] || op.id);
    const what = { create: '新增', update: '修改', delete: '删除' }[op.kind];
    list.append(h('li', { 'data-seq': op.seq }, h('a', { href: rec ? link(rec) : '#today' },
      h('div', {}, `${what}${ENT[op.entity].zh}：${rec ? label(rec) : ''}`, opTag(op)),
      h('div', { class: 'sub' }, op.recorded_at.slice(11, 16)),
    )));
  }
  return h('div', {},
    h('h2', {}, `今日录入（${ops.length}）`),
    ops.length ? list : h('p', { class: 'muted' }, '今天还没有录入记录。'),
    h('div', { class: 'actions' },
      h('a', { class: 'button primary', href: '#new/household' }, '新增家庭户'),
      h('a', { class: 'button primary', href: '#new/person' }, '新增人员'),
    ),
  );
}

/** @param {import('/client/core.js').Op} op */
function opTag(op) {
  if (!op.result) return h('span', { class: 'tag pending' }, '待同步');
  const r = op.result.status === 'duplicate' && op.result.first ? op.result.first : op.result;
  if (r.status === 'rejected') return h('span', { class: 'tag rejected' }, `被拒绝：${REJECTED_ZH[/** @type {keyof REJECTED_ZH} */ (r.code || '')] || r.code}`);
  if ((r.conflicts || []).some((c) => c.status === 'open')) return h('span', { class: 'tag review' }, '待审核');
  if ((r.flags || []).length) return h('span', { class: 'tag review' }, '有逻辑提示');
  return h('span', { class: 'tag' }, '已同步');
}

/** @param {LocalRecord} r */
function link(r) {
  if (r.entity === 'person') return `#person/${r.id}`;
  if (r.entity === 'household') return `#household/${r.id}`;
  return `#edit/${r.entity}/${r.id}`;
}

/** @param {LocalRecord} r */
function tags(r) {
  return [r.pending ? h('span', { class: 'tag pending' }, '待同步') : null, r.rejected ? h('span', { class: 'tag rejected' }, '有被拒绝的修改') : null];
}

/** @param {string} entity */
function all(entity) {
  return [...client.view().values()].filter((r) => r.entity === entity);
}

function households() {
  const rows = all('household').sort((a, b) => String(a.fields.household_no).localeCompare(String(b.fields.household_no), 'zh', { numeric: true }));
  const members = countBy(all('person'), 'household_id');
  return h('div', {},
    h('h2', {}, `家庭户（${rows.length}）`),
    h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#new/household' }, '新增家庭户')),
    h('ul', { class: 'list', id: 'household-list' }, rows.map((r) => h('li', { 'data-id': r.id }, h('a', { href: link(r) },
      h('div', {}, label(r), tags(r)),
      h('div', { class: 'sub' }, `${r.fields.address || ''} · ${members.get(r.id) || 0} 人`),
    )))),
  );
}

/**
 * @param {LocalRecord[]} rows
 * @param {string} field
 */
function countBy(rows, field) {
  const m = new Map();
  for (const r of rows) m.set(r.fields[field], (m.get(r.fields[field]) || 0) + 1);
  return m;
}

function persons() {
  const rows = all('person').sort((a, b) => String(a.fields.name).localeCompare(String(b.fields.name), 'zh'));
  const list = h('ul', { class: 'list', id: 'person-list' });
  const search = /** @type {HTMLInputElement} */ (h('input', { type: 'search', id: 'person-search', placeholder: '按姓名查找' }));
  const fill = () => {
    const q = search.value.trim();
    list.replaceChildren(...rows.filter((r) => !q || String(r.fields.name).includes(q)).slice(0, 300).map((r) => personRow(r)));
  };
  search.addEventListener('input', fill);
  fill();
  return h('div', {}, h('h2', {}, `人员（${rows.length}）`), search, h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#new/person' }, '新增人员')), list);
}

/** @param {LocalRecord} r */
function personRow(r) {
  const f = r.fields;
  const sex = show(ENT.person.fields.find((x) => x.name === 'sex') || /** @type {any} */ ({}), f.sex);
  return h('li', { 'data-id': r.id }, h('a', { href: link(r) },
    h('div', {}, String(f.name || ''), tags(r)),
    h('div', { class: 'sub' }, `${sex} · ${f.birth_date || ''} · ${f.id_number ? show(/** @type {any} */ ({ type: 'resident_id' }), f.id_number) : '无身份证号'}`),
  ));
}

/** @param {string} id */
function household(id) {
  const r = client.view().get(id);
  if (!r) return h('p', { class: 'muted' }, '此户不在本机（可能已合并或已删除）。');
  const people = all('person').filter((p) => p.fields.household_id === id);
  return h('div', {},
    h('h2', {}, label(r), tags(r)),
    fieldsTable(r),
    h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#edit/household/${id}` }, '修改'),
      h('a', { class: 'button primary', href: `#new/person?household_id=${id}` }, '新增家庭成员'),
      h('a', { class: 'button', href: `#new/benefit?household_id=${id}` }, '奖励扶助'),
    ),
    h('h3', {}, `家庭成员（${people.length}）`),
    h('ul', { class: 'list' }, people.map(personRow)),
  );
}

/** @param {LocalRecord} r */
function fieldsTable(r) {
  const dl = h('dl', { class: 'fields' });
  for (const fd of ENT[r.entity].fields) dl.append(h('dt', {}, fd.zh), h('dd', { 'data-field': fd.name }, show(fd, r.fields[fd.name])));
  return dl;
}

/** @param {string} id */
function person(id) {
  const view = client.view();
  const r = view.get(id);
  if (!r) return h('p', { class: 'muted' }, '此人不在本机（可能已合并或已删除）。');
  const related = [...view.values()].filter((x) => x.entity !== 'person' && (x.fields.person_id === id || x.fields.mother_id === id || x.fields.child_id === id));
  const warnings = runChecks('person', r.fields, checkContext('person', r.fields, id));
  const add = ['pregnancy', 'birth', 'death', 'measure', 'visit', 'migration', 'supply', 'benefit'].map((e) =>
    h('a', { class: 'button', href: `#new/${e}?${e === 'birth' ? 'mother_id' : 'person_id'}=${id}` }, ENT[e].zh));
  const open = client.state.conflicts.filter((c) => c.record_id === id && c.status === 'open');
  return h('div', {},
    h('h2', {}, label(r), tags(r)),
    warnings.map((w) => h('p', { class: 'warn' }, `提示：${w.zh}`)),
    open.map((c) => h('p', { class: 'warn' }, `冲突待审核：${fieldZh(c.entity, c.field)}`)),
    fieldsTable(r),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: `#edit/person/${id}` }, '修改')),
    h('h3', {}, '新增记录'),
    h('div', { class: 'grid-buttons' }, add),
    h('h3', {}, `相关记录（${related.length}）`),
    h('ul', { class: 'list', id: 'related' }, related.map((x) => h('li', { 'data-id': x.id }, h('a', { href: link(x) }, label(x), tags(x))))),
  );
}

/**
 * @param {string} entity
 * @param {string|null} field
 */
function fieldZh(entity, field) {
  if (!field) return '删除/修改冲突';
  return ENT[entity]?.fields.find((f) => f.name === field)?.zh || field;
}

function conflicts() {
  const view = client.view();
  const rows = [...client.state.conflicts].sort((a, b) => (a.status === 'open' ? 0 : 1) - (b.status === 'open' ? 0 : 1));
  const value = (/** @type {string} */ entity, /** @type {string|null} */ field, /** @type {unknown} */ v) => {
    const fd = ENT[entity]?.fields.find((f) => f.name === field);
    return fd ? show(fd, v) : JSON.stringify(v);
  };
  return h('div', {},
    h('h2', {}, `冲突（${rows.length}）`),
    h('p', { class: 'muted' }, '两部手机改了同一项时产生冲突。健康和状态类项目由乡镇审核；联系方式、备注以较晚的修改为准。'),
    h('ul', { class: 'list', id: 'conflict-list' }, rows.map((c) => {
      const rec = view.get(c.record_id);
      return h('li', { 'data-id': c.id, 'data-status': c.status }, h('div', { class: 'row' },
        h('div', {}, `${ENT[c.entity]?.zh || c.entity} ${rec ? label(rec) : ''} · ${fieldZh(c.entity, c.field)}`, h('span', { class: 'tag review' }, CONFLICT_STATUS_ZH[/** @type {keyof CONFLICT_STATUS_ZH} */ (c.status)] || c.status)),
        h('div', { class: 'sub' }, `服务器：${value(c.entity, c.field, c.server_value)} · 本机/其他手机：${value(c.entity, c.field, c.device_value)}`),
      ));
    })),
  );
}

// ---------------------------------------------------------------- forms

/**
 * The facts about other records that the checks need.
 * @param {string} entity
 * @param {Record<string, unknown>} fields
 * @param {string|null} id
 */
function checkContext(entity, fields, id) {
  const view = client.view();
  const subjectId = entity === 'person' ? id || '' : String(fields.person_id || fields.mother_id || '');
  const subject = entity === 'person' ? undefined : view.get(subjectId)?.fields;
  const death = [...view.values()].find((r) => r.entity === 'death' && r.fields.person_id === subjectId && r.id !== id);
  let earlierBirths = null;
  if (entity === 'birth' && fields.mother_id && typeof fields.birth_date === 'string') {
    earlierBirths = [...view.values()].filter((r) => r.entity === 'birth' && r.id !== id && r.fields.mother_id === fields.mother_id && String(r.fields.birth_date) < String(fields.birth_date)).length;
  }
  return { today: today(), subject, subjectDeathDate: death ? String(death.fields.death_date) : null, earlierBirths };
}

/**
 * @param {FieldDef} fd
 * @param {unknown} v
 */
function input(fd, v) {
  const common = { id: `f-${fd.name}`, name: fd.name };
  if (fd.type === 'enum') {
    return h('select', common, h('option', { value: '' }, '（请选择）'), (fd.choices || []).map((c) => h('option', { value: c.value, selected: v === c.value }, c.zh)));
  }
  if (fd.type === 'bool') {
    return h('select', common, h('option', { value: '' }, '（未填）'), h('option', { value: 'true', selected: v === true }, '是'), h('option', { value: 'false', selected: v === false }, '否'));
  }
  if (fd.type === 'ref') {
    const rows = all(fd.ref || '').sort((a, b) => label(a).localeCompare(label(b), 'zh'));
    return h('select', common, h('option', { value: '' }, '（请选择）'), rows.map((r) => h('option', { value: r.id, selected: v === r.id }, fd.ref === 'person' ? `${label(r)} ${r.fields.birth_date || ''}` : label(r))));
  }
  const value = v === undefined || v === null ? '' : String(v);
  if (fd.type === 'date') return h('input', { ...common, type: 'date', value });
  if (fd.type === 'int') return h('input', { ...common, type: 'number', inputmode: 'numeric', min: fd.min, max: fd.max, value });
  if (fd.type === 'resident_id') return h('input', { ...common, maxlength: 18, autocomplete: 'off', value });
  if ((fd.max_len || 0) >= 2000) return h('textarea', { ...common, maxlength: fd.max_len }, value);
  const type = fd.name === 'phone' ? 'tel' : 'text';
  return h('input', { ...common, type, maxlength: fd.max_len, value });
}

/**
 * @param {FieldDef} fd
 * @param {string} raw
 */
function parse(fd, raw) {
  const s = raw.trim();
  if (s === '') return null;
  if (fd.type === 'bool') return s === 'true';
  if (fd.type === 'int') return Number.parseInt(s, 10);
  if (fd.type === 'resident_id') return s.toUpperCase();
  return s;
}

/** Dates a new record of each kind starts with. */
const TODAY_FIELDS = ['visit_date', 'handed_on', 'detected_on', 'started_on', 'moved_on'];

/**
 * A create (id null) or edit form for any ledger.
 * @param {string} entity
 * @param {string|null} id
 * @param {URLSearchParams} params  initial values for a new record (e.g. person_id)
 */
function form(entity, id, params) {
  const def = ENT[entity];
  if (!def) return h('p', { class: 'err' }, '未知的记录类型');
  const rec = id ? client.view().get(id) : undefined;
  if (id && !rec) return h('p', { class: 'muted' }, '此记录不在本机（可能已合并或已删除）。');
  /** @type {Record<string, unknown>} */
  const start = rec ? { ...rec.fields } : {};
  if (!rec) {
    for (const [k, v] of params) start[k] = v;
    for (const k of TODAY_FIELDS) if (def.fields.some((f) => f.name === k)) start[k] = today();
    if (entity === 'benefit') start.year = Number(today().slice(0, 4));
    if (entity === 'pregnancy') start.status = 'ongoing';
  }
  const warnBox = h('div', { id: 'warnings' });
  const errBox = h('div', {});
  const f = /** @type {HTMLFormElement} */ (h('form', { id: 'record-form', 'data-entity': entity, novalidate: true },
    h('h2', {}, `${rec ? '修改' : '新增'}${def.zh}`),
    def.fields.map((fd) => [h('label', { for: `f-${fd.name}` }, fd.zh, fd.required ? h('span', { class: 'req' }, ' *') : null), input(fd, start[fd.name])]),
    warnBox,
    errBox,
    h('div', { class: 'actions' },
      h('button', { class: 'primary', type: 'submit', id: 'save' }, '保存'),
      h('button', { type: 'button', onclick: () => history.back() }, '取消'),
      rec ? h('button', { type: 'button', class: 'danger', id: 'delete', onclick: () => remove(entity, rec) }, '删除') : null,
    ),
  ));
  const values = () => {
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const fd of def.fields) {
      const el = /** @type {HTMLInputElement} */ (f.elements.namedItem(fd.name));
      out[fd.name] = parse(fd, el.value);
    }
    return out;
  };
  const check = () => {
    const v = values();
    const merged = { ...start, ...v };
    warnBox.replaceChildren(...runChecks(entity, merged, checkContext(entity, merged, id)).map((w) => h('p', { class: 'warn', 'data-code': w.code }, `提示：${w.zh}（可以保存，乡镇会核查）`)));
  };
  f.addEventListener('input', check);
  f.addEventListener('change', check);
  check();
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = values();
    const missing = def.fields.filter((fd) => fd.required && (v[fd.name] === null || Number.isNaN(v[fd.name])));
    if (missing.length > 0) {
      errBox.replaceChildren(h('p', { class: 'err' }, `请填写：${missing.map((m) => m.zh).join('、')}`));
      return;
    }
    /** @type {Record<string, unknown>} */
    const set = {};
    for (const fd of def.fields) {
      const nv = Number.isNaN(v[fd.name]) ? null : v[fd.name];
      const ov = rec ? rec.fields[fd.name] ?? null : null;
      if (nv !== ov && !(nv === null && ov === null)) set[fd.name] = nv;
    }
    if (!rec) {
      for (const k of Object.keys(set)) if (set[k] === null) delete set[k];
      set.org_unit = orgUnitFor(entity, v);
    }
    if (rec && Object.keys(set).length === 0) {
      history.back();
      return;
    }
    const op = await client.record({ entity: /** @type {any} */ (entity), id: rec?.id, kind: rec ? 'update' : 'create', set });
    statusBox.textContent = `已保存在本机（第 ${op.seq} 条），联网后同步。`;
    const target = client.view().get(op.id);
    if (entity === 'person' || entity === 'household') go(`#${entity}/${op.id}`);
    else if (target && (target.fields.person_id || target.fields.mother_id)) go(`#person/${target.fields.person_id || target.fields.mother_id}`);
    else go('#today');
  });
  return f;
}

/**
 * The village (or group) a new record belongs to: its person's or household's, else the worker's.
 * @param {string} entity
 * @param {Record<string, unknown>} v
 */
function orgUnitFor(entity, v) {
  const view = client.view();
  const parent = view.get(String(v.person_id || v.mother_id || v.household_id || ''));
  return parent?.org_unit || village();
}

/**
 * @param {string} entity
 * @param {LocalRecord} rec
 */
async function remove(entity, rec) {
  if (!window.confirm(`确定删除这条${ENT[entity].zh}记录吗？`)) return;
  await client.record({ entity: /** @type {any} */ (entity), id: rec.id, kind: 'delete' });
  statusBox.textContent = '已删除（联网后同步）。';
  go('#today');
}

boot().catch((e) => {
  main.replaceChildren(h('p', { class: 'err' }, `无法启动：${e}`));
});
