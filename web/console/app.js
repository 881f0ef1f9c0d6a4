// The supervisor console (see README, "Supervisor console"): sign-in, then hash-routed pages
// that only show what the API answers for the signed-in role. Nothing personal goes in the URL:
// the hash names a page only; a selected record or filter lives in memory.

import * as api from "./api.js";
import { t, getLang, setLang } from "./i18n.js";
import { h, clear } from "./dom.js";
import { PAGES } from "./pages.js";

const app = document.getElementById("app");

const NAV = {
  township_supervisor: ["overview", "report", "conflicts", "duplicates", "quality", "ledgers", "devices", "targets"],
  county_supervisor: ["overview", "report", "conflicts", "duplicates", "quality", "ledgers", "devices", "targets"],
  admin: ["users"],
  worker: [],
};

/** What every page may read: the signed-in user, their unit, and the units below it. */
export const ctx = {
  user: null,
  me: null,
  unitName: "",
  children: [],
  villages: [],
  // A page may leave something for the next one here (e.g. the record to open).
  handoff: null,
  go(page, handoff) {
    ctx.handoff = handoff || null;
    if (location.hash === `#/${page}`) render();
    else location.hash = `#/${page}`;
  },
  rerender: () => render(),
};

function currentMonth() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

async function loadUnits() {
  const root = ctx.me.scope[0];
  ctx.root = root;
  if (!root) return;
  // The unit and its children by name only: a breakdown here counted the whole unit at sign-in.
  const [b, c] = await Promise.all([
    api.get("/api/v1/reports/units", { org_unit: root }),
    api.get("/api/v1/reports/completeness", { org_unit: root, period: currentMonth() }).catch(() => null),
  ]);
  ctx.unitName = b.org_unit.name;
  ctx.unitLevel = b.org_unit.level;
  ctx.children = b.children;
  ctx.villages = c ? c.rows.map((r) => r.org_unit) : [];
}

async function startSession(resp) {
  ctx.user = resp.user;
  ctx.me = await api.get("/api/v1/me");
  ctx.unitName = "";
  if (ctx.user.role === "township_supervisor" || ctx.user.role === "county_supervisor") {
    await loadUnits();
  }
  if (!location.hash || location.hash === "#/login") {
    location.hash = `#/${(NAV[ctx.user.role] || [])[0] || "overview"}`;
  }
  render();
}

function langButton() {
  return h(
    "button",
    {
      type: "button",
      class: "link",
      id: "lang",
      onclick: () => {
        setLang(getLang() === "en" ? "zh-CN" : "en");
        render();
      },
    },
    t("lang_switch"),
  );
}

function signInPage(message) {
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const msg = h("p", { class: "error", role: "alert" }, message || "");
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await startSession(await api.signIn(user.value.trim(), pass.value));
        } catch (err) {
          msg.textContent = err.status === 429 ? t("throttled") : t("sign_in_failed");
        }
      },
    },
    h("h1", {}, t("app_title")),
    h("label", { for: "username" }, t("username")),
    user,
    h("label", { for: "password" }, t("password")),
    pass,
    h("button", { type: "submit", id: "signin" }, t("sign_in")),
    msg,
    h("p", {}, langButton()),
  );
  clear(app, form);
  user.focus();
}

function header() {
  const role = ctx.user.role;
  const who = h(
    "span",
    { class: "who", id: "who" },
    h("strong", {}, ctx.me ? `${ctx.me.user.display_name} (${ctx.user.username})` : ctx.user.username),
    " · ",
    h("span", { id: "role" }, t(`role_${role}`)),
    ctx.unitName ? [" · ", h("span", { id: "unit" }, ctx.unitName)] : null,
  );
  const page = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const nav = h(
    "nav",
    { "aria-label": "main" },
    (NAV[role] || []).map((p) =>
      h("a", { href: `#/${p}`, id: `nav-${p}`, "aria-current": p === page ? "page" : null }, t(`nav_${p}`)),
    ),
  );
  const out = h(
    "button",
    {
      type: "button",
      class: "link",
      id: "signout",
      onclick: async () => {
        await api.signOut().catch(() => {});
        ctx.user = null;
        ctx.me = null;
        location.hash = "#/login";
        signInPage();
      },
    },
    t("sign_out"),
  );
  return h("header", {}, h("div", { class: "bar" }, h("span", { class: "brand" }, t("app_title")), who, langButton(), out), nav);
}

async function render() {
  if (!ctx.user) return signInPage();
  const role = ctx.user.role;
  const allowed = NAV[role] || [];
  let page = (location.hash.match(/^#\/(\w+)/) || [])[1];
  if (!allowed.includes(page)) page = allowed[0];
  const main = h("main", { id: "page", tabindex: "-1" });
  clear(app, header(), main);
  if (!page) {
    clear(main, h("p", { class: "notice", id: "not-for-role" }, t("not_for_role")));
    return;
  }
  const handoff = ctx.handoff;
  ctx.handoff = null;
  clear(main, h("p", { class: "loading" }, t("loading")));
  const started = performance.now();
  try {
    await PAGES[page](ctx, main, handoff);
    main.dataset.ready = page;
    main.dataset.ms = String(Math.round(performance.now() - started));
  } catch (e) {
    clear(main, h("p", { class: "error", role: "alert" }, `${t("error")}: ${e.message}`));
    main.dataset.ready = "error";
  }
}

window.addEventListener("hashchange", () => render());

async function boot() {
  document.documentElement.lang = getLang();
  try {
    const resp = await api.resume();
    if (resp) return await startSession(resp);
  } catch {
    // No session: sign in.
  }
  signInPage();
}

boot();
