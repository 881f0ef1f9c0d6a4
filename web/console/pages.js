// The console's pages. Each is `async (ctx, main, handoff)`: it reads the API and fills `main`.

import * as api from "./api.js";
import { t, label, getLang } from "./i18n.js";
import { h, clear, table, when, show, fmtNum } from "./dom.js";

const KEY_INDICATORS = [
  "contraceptive_prevalence",
  "policy_compliant_birth_rate",
  "long_acting_measure_rate",
  "crude_birth_rate",
  "sex_ratio_at_birth",
  "follow_up_rate",
];
const ENTITIES = ["person", "household", "pregnancy", "birth", "death", "measure", "visit", "migration", "supply", "benefit"];
const lang = () => (getLang() === "en" ? "en" : "zh-CN");

function monthsBack(n) {
  const d = new Date();
  const out = [];
  for (let i = n - 1; i >= 0; i--) {
    const x = new Date(d.getFullYear(), d.getMonth() - i, 1);
    out.push(`${x.getFullYear()}-${String(x.getMonth() + 1).padStart(2, "0")}`);
  }
  return out;
}

const thisMonth = () => monthsBack(1)[0];
const lastMonth = () => monthsBack(2)[0];

function indicatorName(report, key) {
  return report.labels.indicators[key] || key;
}

function attainmentText(row) {
  if (row.value === null) return t("not_applicable");
  if (!row.target) return t("no_target");
  const a = row.attainment;
  const n = Math.abs(a.gap).toFixed(2);
  return `${a.met ? t("met") : t("missed")}, ${a.gap >= 0 ? t("points_above", { n }) : t("points_below", { n })}`;
}

function targetText(row) {
  if (!row.target) return "—";
  return `${row.target.direction === "at_most" ? "≤" : "≥"} ${row.target.value}${row.unit}`;
}

function valueText(row) {
  return row.value === null ? t("not_applicable") : `${fmtNum(row.value)}${row.unit}`;
}

function section(title, ...body) {
  return h("section", {}, h("h2", {}, title), body);
}

function pager(load, render) {
  // Appends the next server page below a list; `load(after)` answers a page.
  const box = h("div", { class: "pager" });
  let after = null;
  const more = h("button", { type: "button", class: "more" }, t("more"));
  async function next(first) {
    const page = await load(first ? null : after);
    after = page.next_after || null;
    render(page, first);
    more.hidden = !after;
  }
  more.addEventListener("click", () =>
    next(false).catch((e) => {
      more.textContent = `${t("error")}: ${e.message}`;
    }),
  );
  box.append(more);
  return { box, start: () => next(true) };
}

let echartsModule = null;
async function echarts() {
  if (!echartsModule) echartsModule = await import("/vendor/echarts/echarts.esm.min.mjs");
  return echartsModule;
}

// A phone's enrolment as a link to the field app with the code in the URL's fragment (which the
// browser never sends to a server), and that link as a QR code for the phone's camera: the
// worker scans it instead of typing 24 characters.
function enrolmentLink(code) {
  return `${location.origin}/field/#enrol=${encodeURIComponent(code)}`;
}

async function qrSvg(text, label) {
  const { encode } = await import("/vendor/uqr/index.mjs");
  const { data } = encode(text, { ecc: "M", border: 2 });
  const n = data.length;
  let d = "";
  data.forEach((row, y) => row.forEach((dark, x) => dark && (d += `M${x} ${y}h1v1h-1z`)));
  const svgEl = (tag, attrs) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  };
  const svg = svgEl("svg", { viewBox: `0 0 ${n} ${n}`, role: "img", "aria-label": label, id: "enrolment-qr", class: "qr", "shape-rendering": "crispEdges", "data-modules": n });
  svg.append(svgEl("rect", { width: n, height: n, fill: "#fff" }), svgEl("path", { d, fill: "#000" }));
  return svg;
}

function unitOptions(ctx, selected, withRoot = true) {
  const opts = [];
  if (withRoot) opts.push(h("option", { value: ctx.root, selected: selected === ctx.root }, ctx.unitName));
  for (const u of ctx.children) opts.push(h("option", { value: u.code, selected: selected === u.code }, u.name));
  if (ctx.unitLevel === "county") {
    for (const v of ctx.villages)
      opts.push(h("option", { value: v.code, selected: selected === v.code }, `· ${v.name}`));
  }
  return opts;
}

function villageSelect(ctx, id, selected) {
  return h(
    "select",
    { id, "aria-label": t("village") },
    h("option", { value: "" }, t("all")),
    ctx.villages.map((v) => h("option", { value: v.code, selected: v.code === selected }, v.name)),
  );
}

function entitySelect(id, selected, withAll = true) {
  return h(
    "select",
    { id, "aria-label": t("entity") },
    withAll ? h("option", { value: "" }, t("all")) : null,
    ENTITIES.map((e) => h("option", { value: e, selected: e === selected }, e)),
  );
}

// 首页 overview ----------------------------------------------------------------------------

const overviewState = { rankBy: "contraceptive_prevalence" };

/** The child units ranked worst first by `indicator` (the API's `order=worst`). */
const rankingOf = (ctx, month, indicator) =>
  api.get("/api/v1/reports/breakdown", { org_unit: ctx.root, period: month, sort: indicator, order: "worst", lang: lang() });

function rankingRows(ranking, indicator) {
  return ranking.rows.map((row) => {
    const r = row.indicators.find((i) => i.indicator === indicator);
    const cls = r.attainment ? (r.attainment.met ? "met" : "missed") : null;
    return h(
      "tr",
      { dataset: { unit: row.org_unit.code }, class: cls },
      h("td", {}, row.rank === null ? "—" : String(row.rank)),
      h("th", { scope: "row" }, row.org_unit.name),
      h("td", { class: "num value" }, valueText(r)),
      h("td", {}, targetText(r)),
      h("td", {}, attainmentText(r)),
    );
  });
}

async function overview(ctx, main) {
  const month = thisMonth();
  const months = monthsBack(12);
  // One breakdown answers both the unit's figures (its total row is the report's figure) and
  // the ranking: asking for the report beside it counted the whole unit twice.
  const [ranking, conflicts, dups, flags, stale] = await Promise.all([
    rankingOf(ctx, month, overviewState.rankBy),
    api.get("/api/v1/supervise/conflicts", { status: "open", limit: 1 }),
    api.get("/api/v1/supervise/duplicates", { limit: 1 }),
    api.get("/api/v1/supervise/flags/summary"),
    api.get("/api/v1/supervise/devices/status", { inactive_days: 7, limit: 1 }),
  ]);
  const counts = h(
    "div",
    { class: "counts" },
    [
      ["conflicts", t("open_conflicts"), conflicts.total, "count-conflicts"],
      ["duplicates", t("duplicates"), dups.total, "count-duplicates"],
      ["quality", t("logic_flags"), flags.total, "count-flags"],
      ["devices", t("stale_devices"), stale.total, "count-stale"],
    ].map(([page, name, n, id]) =>
      h("a", { href: `#/${page}`, class: "count", id }, h("span", { class: "n" }, String(n)), h("span", {}, name)),
    ),
  );
  const report = { org_unit: ranking.org_unit, period: ranking.period, labels: ranking.labels, indicators: ranking.total.indicators };
  labelCache[lang()] = { labels: report.labels };
  const byKey = Object.fromEntries(report.indicators.map((r) => [r.indicator, r]));
  const cards = KEY_INDICATORS.map((k) => {
    const r = byKey[k];
    const cls = r.attainment ? (r.attainment.met ? "card met" : "card missed") : "card";
    return h(
      "div",
      { class: cls, dataset: { indicator: k } },
      h("div", { class: "name" }, indicatorName(report, k)),
      h("div", { class: "value", dataset: { value: r.value === null ? "" : String(r.value) } }, valueText(r)),
      h("div", { class: "target" }, `${t("target")}: ${targetText(r)}`),
      h("div", { class: "attain" }, attainmentText(r)),
      h("div", { class: "chart", dataset: { chart: k } }),
    );
  });
  const tbody = h("tbody", {}, rankingRows(ranking, overviewState.rankBy));
  const rankMsg = h("p", { class: "error", role: "alert" });
  const rankBy = h(
    "select",
    {
      id: "ranking-indicator",
      "aria-label": t("rank_by"),
      onchange: async () => {
        overviewState.rankBy = rankBy.value;
        rankMsg.textContent = "";
        try {
          const r = await rankingOf(ctx, month, rankBy.value);
          tbody.replaceChildren(...rankingRows(r, rankBy.value));
          tbody.closest("table").dataset.rankedBy = rankBy.value;
        } catch (e) {
          rankMsg.textContent = `${t("error")}: ${e.message}`;
        }
      },
    },
    INDICATORS.map((k) => h("option", { value: k, selected: k === overviewState.rankBy }, indicatorName(report, k))),
  );
  clear(
    main,
    h("h1", {}, `${t("nav_overview")} · ${report.org_unit.name} · ${report.period.label}`),
    counts,
    section(t("key_indicators"), h("div", { class: "cards", id: "key-indicators" }, cards), h("p", { class: "hint" }, t("trend_12"))),
    section(
      t("ranking"),
      h("p", { class: "filters" }, h("label", { for: "ranking-indicator" }, t("rank_by")), rankBy),
      h("p", { class: "hint" }, t("ranking_hint")),
      rankMsg,
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { id: "ranking", dataset: { rankedBy: overviewState.rankBy } },
          h("thead", {}, h("tr", {}, [t("rank"), t("unit"), t("value"), t("target"), t("attainment")].map((c) => h("th", { scope: "col" }, c)))),
          tbody,
        ),
      ),
    ),
  );
  // The trends come after the figures: twelve months take longer than the page's first answer.
  const hint = main.querySelector(".hint");
  drawTrends(ctx, main, months).catch((e) => (hint.textContent = `${t("trend_12")}: ${t("error")} ${e.message}`));
}

async function drawTrends(ctx, main, months) {
  const [ec, trend] = await Promise.all([
    echarts(),
    api.get("/api/v1/reports/trend", {
      org_unit: ctx.root,
      to: months[months.length - 1],
      months: months.length,
      indicators: KEY_INDICATORS.join(","),
    }),
  ]);
  for (const k of KEY_INDICATORS) {
    const el = main.querySelector(`[data-chart="${k}"]`);
    if (!el || !el.isConnected) return;
    const chart = ec.init(el, null, { renderer: "svg", height: 120 });
    const values = trend.series.find((s) => s.indicator === k).points.map((p) => p.value);
    el.dataset.points = JSON.stringify(values);
    chart.setOption({
      animation: false,
      grid: { left: 36, right: 8, top: 8, bottom: 20 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: months.map((m) => m.slice(5)) },
      yAxis: { type: "value", scale: true },
      series: [{ type: "line", data: values, connectNulls: false, symbolSize: 4 }],
    });
    new ResizeObserver(() => chart.resize()).observe(el);
  }
  main.dataset.trends = "drawn";
}

// 月报 report -----------------------------------------------------------------------------

const reportState = { unit: null, kind: "month", period: null, from: null, to: null };

function periodParams(s) {
  switch (s.kind) {
    case "month":
      return { period: s.period, kind: "month" };
    case "quarter":
      return { period: s.period, kind: "quarter" };
    case "ytd":
      return { period: s.period, kind: "ytd" };
    case "year":
      return { period: s.period, kind: "year" };
    default:
      return { kind: "range", from: s.from, to: s.to };
  }
}

function defaultPeriod(kind) {
  const m = lastMonth();
  if (kind === "quarter") return `${m.slice(0, 4)}-Q${Math.floor((Number(m.slice(5)) - 1) / 3) + 1}`;
  if (kind === "year") return m.slice(0, 4);
  return m;
}

async function report(ctx, main, handoff) {
  const s = reportState;
  if (handoff && handoff.unit) s.unit = handoff.unit;
  if (!s.unit) s.unit = ctx.root;
  if (!s.period) s.period = defaultPeriod(s.kind);
  const kind = h(
    "select",
    { id: "period-kind", "aria-label": t("period") },
    ["month", "quarter", "ytd", "year", "range"].map((k) => h("option", { value: k, selected: s.kind === k }, t(k))),
  );
  const periodIn = h("input", { id: "period", value: s.period || "", "aria-label": t("period"), size: 8 });
  const fromIn = h("input", { id: "from", type: "date", value: s.from || "", "aria-label": t("from") });
  const toIn = h("input", { id: "to", type: "date", value: s.to || "", "aria-label": t("to") });
  const unit = h("select", { id: "report-unit", "aria-label": t("unit") }, unitOptions(ctx, s.unit));
  if (!unit.value) unit.append(h("option", { value: s.unit, selected: true }, s.unit));
  const rangeOnly = () => {
    const r = kind.value === "range";
    periodIn.hidden = r;
    fromIn.hidden = toIn.hidden = !r;
  };
  kind.addEventListener("change", () => {
    periodIn.value = defaultPeriod(kind.value);
    rangeOnly();
  });
  rangeOnly();
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        Object.assign(s, { unit: unit.value, kind: kind.value, period: periodIn.value, from: fromIn.value, to: toIn.value });
        ctx.rerender();
      },
    },
    unit,
    kind,
    periodIn,
    fromIn,
    toIn,
    h("button", { type: "submit", id: "show-report" }, t("show")),
  );
  const params = { org_unit: s.unit, ...periodParams(s), lang: lang() };
  // A month's completeness table (not a village's) is asked for at once, beside the report.
  const completeness =
    s.kind === "month" && !ctx.villages.some((v) => v.code === s.unit)
      ? api.get("/api/v1/reports/completeness", { org_unit: s.unit, period: s.period, lang: lang() })
      : null;
  completeness?.catch(() => {});
  // The report and its breakdown from one count of the unit (two requests counted it twice).
  const { report: rep, breakdown: bd } = await api.get("/api/v1/reports/with-breakdown", params);
  const ind = table(
    [t("indicator"), t("numerator"), t("denominator"), t("value"), t("target"), t("attainment")],
    rep.indicators.map((r) =>
      h(
        "tr",
        { dataset: { indicator: r.indicator } },
        h("th", { scope: "row" }, indicatorName(rep, r.indicator)),
        h("td", { class: "num" }, fmtNum(r.numerator)),
        h("td", { class: "num" }, fmtNum(r.denominator)),
        h("td", { class: "num value" }, valueText(r)),
        h("td", {}, targetText(r)),
        h("td", {}, attainmentText(r)),
      ),
    ),
    { id: "indicators" },
  );
  const countRows = Object.entries(rep.counts).map(([k, v]) =>
    h("tr", {}, h("th", { scope: "row" }, rep.labels.counts[k] || k), h("td", { class: "num" }, String(v))),
  );
  const downloads = h(
    "p",
    { class: "actions" },
    ["csv", "xlsx"].map((f) =>
      h(
        "button",
        {
          type: "button",
          id: `download-${f}`,
          onclick: () =>
            api.download(`/api/v1/exports/report.${f}`, params, `report-${rep.org_unit.code}-${rep.period.label.replace("..", "_")}.${f}`),
        },
        t(`download_${f}`),
      ),
    ),
  );
  const parts = [
    h("h1", {}, `${t("nav_report")} · ${rep.org_unit.name} · ${rep.period.label}`),
    form,
    downloads,
  ];
  if (s.unit !== ctx.root) {
    parts.push(
      h("p", {}, h("button", { type: "button", class: "link", onclick: () => ((s.unit = ctx.root), ctx.rerender()) }, `${t("back_to")} ${ctx.unitName}`)),
    );
  }
  if (s.kind === "month") parts.push(await approvalSection(ctx, rep, s, completeness));
  parts.push(section(t("indicator"), ind));
  if (bd && bd.rows.length) {
    parts.push(
      section(
        t("breakdown"),
        table(
          [t("unit"), ...KEY_INDICATORS.map((k) => indicatorName(rep, k)), ""],
          bd.rows.map((row) => {
            const by = Object.fromEntries(row.indicators.map((r) => [r.indicator, r]));
            return h(
              "tr",
              {},
              h("th", { scope: "row" }, row.org_unit.name),
              KEY_INDICATORS.map((k) => h("td", { class: "num" }, valueText(by[k]))),
              h("td", {}, h("button", { type: "button", class: "link", onclick: () => ((s.unit = row.org_unit.code), ctx.rerender()) }, t("open_report"))),
            );
          }),
          { id: "breakdown" },
        ),
      ),
    );
  }
  parts.push(h("details", { id: "counts" }, h("summary", {}, t("count")), table([t("indicator"), t("value")], countRows)));
  clear(main, parts);
}

function statusText(st) {
  return t(`status_${st || "none"}`);
}

async function approvalSection(ctx, rep, s, completeness) {
  const role = ctx.user.role;
  const box = h("section", { id: "approval" }, h("h2", {}, t("approval")));
  const reason = h("input", { id: "approval-reason", "aria-label": t("reason"), placeholder: t("reason") });
  const msg = h("p", { class: "error", role: "alert" });
  const act = (fn) => async () => {
    try {
      await fn();
      ctx.rerender();
    } catch (e) {
      msg.textContent = e.message;
    }
  };
  if (rep.org_unit.level === "village") {
    const sub = rep.approval && rep.approval.submission;
    box.append(h("p", {}, `${t("status")}: `, h("strong", { id: "approval-status" }, statusText(sub && sub.status))));
    const buttons = [];
    if (role === "township_supervisor") {
      if (!sub || sub.status === "returned")
        buttons.push(h("button", { type: "button", id: "submit-report", onclick: act(() => api.post("/api/v1/reports/submissions", { org_unit: rep.org_unit.code, period: s.period })) }, t("submit")));
      if (sub && sub.status === "submitted") {
        buttons.push(h("button", { type: "button", id: "approve", onclick: act(() => api.post(`/api/v1/reports/submissions/${sub.id}/approve`)) }, t("approve")));
        buttons.push(
          reason,
          h(
            "button",
            {
              type: "button",
              id: "return",
              onclick: act(() => {
                if (!reason.value.trim()) throw new Error(t("reason_required"));
                return api.post(`/api/v1/reports/submissions/${sub.id}/return`, { comment: reason.value.trim() });
              }),
            },
            t("return"),
          ),
        );
      }
    }
    box.append(h("div", { class: "actions" }, buttons), msg);
    if (sub) {
      // Every action on the report, oldest first: who (name, role), when, and a return's reason.
      const hist = await api.get(`/api/v1/reports/submissions/${sub.id}/history`);
      box.append(
        h("h3", {}, t("history")),
        h(
          "ol",
          { class: "timeline", id: "approval-history" },
          hist.events.map((e) =>
            h(
              "li",
              { dataset: { action: e.action } },
              h("strong", {}, t(`action_${e.action}`)),
              ` · ${when(e.at)} · ${e.display_name ? `${e.display_name} (${e.username})` : e.username || e.user_id.slice(0, 8)}`,
              e.role ? ` · ${t(`role_${e.role}`)}` : "",
              e.reason ? h("div", { class: "reason" }, `${t("comment")}: ${e.reason}`) : null,
            ),
          ),
        ),
      );
    }
    return box;
  }
  const c = await (completeness || api.get("/api/v1/reports/completeness", { org_unit: rep.org_unit.code, period: s.period, lang: lang() }));
  if (role === "county_supervisor") {
    box.append(h("div", { class: "actions" }, h("button", { type: "button", id: "lock", onclick: act(() => api.post("/api/v1/reports/lock", { org_unit: rep.org_unit.code, period: s.period })) }, t("lock"))));
  }
  box.append(
    msg,
    h("p", {}, `${c.labels.completeness}: ${fmtNum(c.completeness.value)}% · ${c.labels.timeliness}: ${fmtNum(c.timeliness.value)}%`),
    table(
      [t("village"), t("status"), t("submitted_at"), ""],
      c.rows.map((r) =>
        h(
          "tr",
          { dataset: { village: r.org_unit.code } },
          h("th", { scope: "row" }, r.org_unit.name),
          h("td", { class: "status" }, statusText(r.status)),
          h("td", {}, when(r.first_submitted_at)),
          h("td", {}, h("button", { type: "button", class: "link open-village", onclick: () => ((s.unit = r.org_unit.code), ctx.rerender()) }, t("open_report"))),
        ),
      ),
      { id: "submissions" },
    ),
  );
  return box;
}

// 冲突 conflicts ---------------------------------------------------------------------------

const conflictFilter = { status: "open", village: "", entity: "", min_age_days: "" };

async function conflicts(ctx, main) {
  const f = conflictFilter;
  const status = h("select", { id: "conflict-status", "aria-label": t("status") }, ["open", "closed", "resolved", "all"].map((s) => h("option", { value: s, selected: f.status === s }, t(s))));
  const village = villageSelect(ctx, "conflict-village", f.village);
  const entity = entitySelect("conflict-entity", f.entity);
  const age = h("input", { id: "conflict-age", type: "number", min: 0, value: f.min_age_days, "aria-label": t("min_age_days"), placeholder: t("min_age_days"), size: 6 });
  const reason = h("input", { id: "conflict-reason", "aria-label": t("reason"), placeholder: t("reason") });
  const msg = h("p", { class: "error", role: "alert" });
  const tbody = h("tbody");
  const total = h("span", { id: "conflict-total" });
  const selected = new Set();
  const needReason = () => {
    const r = reason.value.trim();
    if (!r) {
      msg.textContent = t("reason_required");
      reason.focus();
      return null;
    }
    return r;
  };
  const run = (fn) => async () => {
    msg.textContent = "";
    try {
      if (await fn()) ctx.rerender();
    } catch (e) {
      msg.textContent = e.message;
    }
  };
  const resolve = (c, take, value) =>
    run(async () => {
      const r = needReason();
      if (!r) return false;
      const body = { take, reason: r };
      if (take === "value") body.value = value();
      await api.post(`/api/v1/supervise/conflicts/${c.id}/resolve`, body);
      return true;
    });
  const bulk = (take) =>
    run(async () => {
      const r = needReason();
      if (!r || !selected.size) return false;
      await api.post("/api/v1/supervise/conflicts/resolve-bulk", { ids: [...selected], take, reason: r });
      return true;
    });
  const { box, start } = pager(
    (after) => api.get("/api/v1/supervise/conflicts", { status: f.status, village: f.village, entity: f.entity, min_age_days: f.min_age_days, after, limit: 50 }),
    (page, first) => {
      if (first) tbody.replaceChildren();
      total.textContent = `${t("total")} ${page.total} ${t("items")}`;
      for (const c of page.items) {
        const fieldKey = c.field;
        const pick = (o) => (fieldKey && o && typeof o === "object" && fieldKey in o ? o[fieldKey] : o);
        const edit = h("input", { class: "edit-value", "aria-label": t("value"), value: show(pick(c.server_value)) === "—" ? "" : show(pick(c.server_value)), size: 10 });
        const check = h("input", {
          type: "checkbox",
          "aria-label": t("select"),
          onchange: (e) => (e.target.checked ? selected.add(c.id) : selected.delete(c.id)),
        });
        const actions =
          c.status === "open"
            ? [
                h("button", { type: "button", class: "take-server", onclick: resolve(c, "server") }, t("take_server")),
                h("button", { type: "button", class: "take-device", onclick: resolve(c, "device") }, t("take_device")),
                edit,
                h("button", { type: "button", class: "take-value", onclick: resolve(c, "value", () => (edit.value === "" ? null : edit.value)) }, t("take_value")),
              ]
            : c.status === "closed" && c.policy === "latest"
              ? // A value the `latest` policy settled by itself (closed) can go back to the queue.
                [h("button", { type: "button", class: "reopen", onclick: run(async () => (await api.post(`/api/v1/supervise/conflicts/${c.id}/reopen`), true)) }, t("reopen"))]
              : [h("span", { class: "resolution" }, c.reason ? `${t("resolved")} · ${c.reason}` : t("resolved"))];
        tbody.append(
          h(
            "tr",
            { dataset: { conflict: c.id, record: c.record_id } },
            h("td", {}, c.status === "open" ? check : null),
            h("th", { scope: "row" }, `${label(c.entity_label)} · ${c.field_label ? label(c.field_label) : c.kind}`, h("div", { class: "sub" }, c.org_unit)),
            h("td", { class: "base" }, show(pick(c.base_value))),
            h("td", { class: "server" }, show(pick(c.server_value))),
            h("td", { class: "device" }, show(pick(c.device_value))),
            h("td", {}, `${c.device_id ? c.device_id.slice(0, 8) : c.user_id.slice(0, 8)} · ${when(c.created_at)}`),
            h("td", { class: "num" }, String(c.age_days)),
            h("td", { class: "actions" }, actions),
          ),
        );
      }
    },
  );
  clear(
    main,
    h("h1", {}, t("nav_conflicts")),
    h(
      "form",
      {
        class: "filters",
        onsubmit: (e) => {
          e.preventDefault();
          Object.assign(f, { status: status.value, village: village.value, entity: entity.value, min_age_days: age.value });
          ctx.rerender();
        },
      },
      status,
      village,
      entity,
      age,
      h("button", { type: "submit" }, t("show")),
    ),
    h(
      "p",
      { class: "actions" },
      reason,
      h("button", { type: "button", id: "bulk-server", onclick: bulk("server") }, `${t("resolve_selected")}: ${t("take_server")}`),
      h("button", { type: "button", id: "bulk-device", onclick: bulk("device") }, `${t("resolve_selected")}: ${t("take_device")}`),
    ),
    msg,
    total,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { id: "conflicts" },
        h("thead", {}, h("tr", {}, ["", t("field"), t("base_value"), t("server_value"), t("device_value"), t("who_when"), t("age_days"), ""].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    box,
  );
  await start();
}

// 重复 duplicates --------------------------------------------------------------------------

async function duplicates(ctx, main) {
  const msg = h("p", { class: "error", role: "alert" });
  const list = h("div", { id: "duplicates" });
  const total = h("span", { id: "duplicate-total" });
  const village = villageSelect(ctx, "duplicate-village", "");
  const run = (fn) => async () => {
    msg.textContent = "";
    try {
      await fn();
      ctx.rerender();
    } catch (e) {
      msg.textContent = e.message;
    }
  };
  const { box, start } = pager(
    (after) => api.get("/api/v1/supervise/duplicates", { village: village.value, after, limit: 20 }),
    (page, first) => {
      if (first) list.replaceChildren();
      total.textContent = `${t("total")} ${page.total} ${t("items")}`;
      page.items.forEach((p, i) => list.append(pairCard(p, i, run)));
    },
  );
  village.addEventListener("change", () => start());
  // Every merge of the scope (automatic or a supervisor's, this session's or earlier), newest first.
  const mergeList = h("ul", { id: "recent-merges" });
  const mergePager = pager(
    (after) => api.get("/api/v1/supervise/merges", { village: village.value, after, limit: 20 }),
    (page, first) => {
      if (first) mergeList.replaceChildren();
      for (const m of page.items) {
        mergeList.append(
          h(
            "li",
            { dataset: { merge: m.merge_id } },
            `${show(m.survivor.fields.name)} ← ${show(m.merged.fields.name)} · ${m.org_unit} · ${when(m.merged_at)}${m.automatic ? ` · ${t("merge_automatic")}` : ""} `,
            m.undone_at
              ? h("span", { class: "undone" }, `${t("merge_undone")} ${when(m.undone_at)}`)
              : h(
                  "button",
                  {
                    type: "button",
                    class: "undo-merge",
                    onclick: run(async () => {
                      await api.post(`/api/v1/supervise/merges/${m.merge_id}/undo`);
                    }),
                  },
                  t("undo_merge"),
                ),
          ),
        );
      }
    },
  );
  village.addEventListener("change", () => mergePager.start());
  const merges = section(t("recent_merges"), mergeList, mergePager.box);
  clear(main, h("h1", {}, t("nav_duplicates")), h("p", { class: "filters" }, village), msg, total, list, box, merges);
  await Promise.all([start(), mergePager.start()]);
}

function pairCard(p, i, run) {
  const name = `dup-${i}`;
  const keys = [...new Set([...Object.keys(p.a.fields), ...Object.keys(p.b.fields)])].sort();
  const diff = new Set(p.disagreements);
  const survivorA = h("input", { type: "radio", name: `${name}-survivor`, value: "a", checked: true, id: `${name}-a` });
  const survivorB = h("input", { type: "radio", name: `${name}-survivor`, value: "b", id: `${name}-b` });
  const choice = {};
  const rows = keys.map((k) => {
    const pickA = h("input", { type: "radio", name: `${name}-f-${k}`, value: "a", checked: true, "aria-label": `${k} A` });
    const pickB = h("input", { type: "radio", name: `${name}-f-${k}`, value: "b", "aria-label": `${k} B` });
    if (diff.has(k)) choice[k] = () => (pickA.checked ? "a" : "b");
    return h(
      "tr",
      { class: diff.has(k) ? "diff" : "" },
      h("th", { scope: "row" }, k),
      h("td", {}, diff.has(k) ? pickA : null, " ", show(p.a.fields[k])),
      h("td", {}, diff.has(k) ? pickB : null, " ", show(p.b.fields[k])),
    );
  });
  const reason = h("input", { "aria-label": t("reason"), placeholder: t("reason"), class: "dup-reason" });
  const merge = run(async () => {
    const aSurvives = survivorA.checked;
    const survivor = aSurvives ? p.a : p.b;
    const merged = aSurvives ? p.b : p.a;
    const fields = {};
    for (const [k, get] of Object.entries(choice)) {
      const side = get();
      fields[k] = (side === "a") === aSurvives ? "survivor" : "merged";
    }
    return api.post("/api/v1/supervise/duplicates/merge", {
      survivor_id: survivor.id,
      merged_id: merged.id,
      fields,
      reason: reason.value.trim() || null,
    });
  });
  const dismiss = run(async () => {
    if (!reason.value.trim()) throw new Error(t("reason_required"));
    await api.post("/api/v1/supervise/duplicates/dismiss", { a_id: p.a.id, b_id: p.b.id, reason: reason.value.trim() });
  });
  return h(
    "article",
    { class: "pair", dataset: { a: p.a.id, b: p.b.id } },
    h("h3", {}, `${show(p.a.fields.name)} · ${p.signal_zh && getLang() !== "en" ? p.signal_zh : p.signal} · ${p.org_unit}`),
    table(
      [t("field"), h("label", { for: `${name}-a` }, survivorA, ` A ${t("survivor")}`), h("label", { for: `${name}-b` }, survivorB, ` B ${t("survivor")}`)],
      rows,
    ),
    h("p", { class: "actions" }, reason, h("button", { type: "button", class: "merge", onclick: merge }, t("merge")), h("button", { type: "button", class: "dismiss", onclick: dismiss }, t("dismiss"))),
  );
}

// 逻辑错误 data quality --------------------------------------------------------------------

async function quality(ctx, main, handoff) {
  const sum = await api.get("/api/v1/supervise/flags/summary");
  const checkName = (c) => (getLang() === "en" ? c.en : c.zh);
  const list = h("div", { id: "flag-list" });
  const showFlags = async (filter) => {
    const tbody = h("tbody");
    const { box, start } = pager(
      (after) => api.get("/api/v1/supervise/flags", { ...filter, after, limit: 50 }),
      (page, first) => {
        if (first) tbody.replaceChildren();
        for (const fl of page.items) {
          tbody.append(
            h(
              "tr",
              { dataset: { record: fl.record_id, check: fl.check } },
              h("td", {}, checkName(fl)),
              h("td", {}, fl.entity),
              h("td", {}, fl.org_unit),
              h("td", {}, when(fl.raised_at)),
              h("td", {}, h("button", { type: "button", class: "link open-record", onclick: () => ctx.go("ledgers", { entity: fl.entity, id: fl.record_id }) }, t("detail"))),
            ),
          );
        }
      },
    );
    clear(
      list,
      h("div", { class: "scroll" }, h("table", { id: "flags" }, h("thead", {}, h("tr", {}, [t("check"), t("entity"), t("village"), t("raised_at"), ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
      box,
    );
    await start();
  };
  clear(
    main,
    h("h1", {}, `${t("nav_quality")} (${sum.total})`),
    section(
      t("check"),
      table(
        [t("check"), t("count")],
        sum.checks.map((c) => h("tr", { dataset: { check: c.check } }, h("th", { scope: "row" }, h("button", { type: "button", class: "link", onclick: () => showFlags({ check: c.check }) }, checkName(c))), h("td", { class: "num" }, String(c.count)))),
        { id: "flag-checks" },
      ),
    ),
    section(
      t("village"),
      table(
        [t("village"), t("count"), t("check")],
        sum.villages.map((v) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, h("button", { type: "button", class: "link", onclick: () => showFlags({ village: v.village }) }, v.name || v.village)),
            h("td", { class: "num" }, String(v.total)),
            h("td", {}, v.checks.map((c) => h("button", { type: "button", class: "link chip", dataset: { village: v.village, check: c.check }, onclick: () => showFlags({ village: v.village, check: c.check }) }, `${checkName(c)} ${c.count}`))),
          ),
        ),
        { id: "flag-villages" },
      ),
    ),
    list,
  );
  if (handoff) await showFlags(handoff);
}

// 台账 ledgers -----------------------------------------------------------------------------

const ledgerFilter = { entity: "person", village: "", name: "", id_number: "" };

async function ledgers(ctx, main, handoff) {
  if (handoff && handoff.id) return recordDetail(ctx, main, handoff.entity, handoff.id);
  const f = ledgerFilter;
  const entity = entitySelect("ledger-entity", f.entity, false);
  const village = villageSelect(ctx, "ledger-village", f.village);
  const name = h("input", { id: "ledger-name", value: f.name, placeholder: t("name"), "aria-label": t("name") });
  const idn = h("input", { id: "ledger-id", value: f.id_number, placeholder: t("id_number"), "aria-label": t("id_number") });
  const total = h("span", { id: "ledger-total" });
  const thead = h("thead");
  const tbody = h("tbody");
  let cols = null;
  const { box, start } = pager(
    (after) => {
      const p = { village: f.village, after, limit: 50 };
      if (f.entity === "person") Object.assign(p, { name_prefix: f.name, id_number: f.id_number });
      return api.get(`/api/v1/supervise/${f.entity}`, p);
    },
    (page, first) => {
      total.textContent = `${label(page.entity_label)} · ${t("total")} ${page.total} ${t("items")}`;
      if (first) {
        tbody.replaceChildren();
        cols = [...new Set(page.items.flatMap((r) => Object.keys(r.fields)))].filter((k) => !k.endsWith("_id")).slice(0, 8);
        thead.replaceChildren(h("tr", {}, [...cols, t("village"), ""].map((c) => h("th", { scope: "col" }, c))));
      }
      for (const r of page.items) {
        tbody.append(
          h(
            "tr",
            { dataset: { record: r.id } },
            cols.map((k) => h("td", {}, show(r.fields[k]))),
            h("td", {}, r.org_unit),
            h("td", {}, h("button", { type: "button", class: "link open-record", onclick: () => ctx.go("ledgers", { entity: r.entity, id: r.id }) }, t("detail"))),
          ),
        );
      }
    },
  );
  clear(
    main,
    h("h1", {}, t("nav_ledgers")),
    h(
      "form",
      {
        class: "filters",
        onsubmit: (e) => {
          e.preventDefault();
          Object.assign(f, { entity: entity.value, village: village.value, name: name.value.trim(), id_number: idn.value.trim() });
          ctx.rerender();
        },
      },
      entity,
      village,
      name,
      idn,
      h("button", { type: "submit", id: "ledger-search" }, t("search")),
    ),
    total,
    h("div", { class: "scroll" }, h("table", { id: "ledger" }, thead, tbody)),
    box,
  );
  await start();
}

function parseLike(original, text) {
  if (text === "") return null;
  if (typeof original === "boolean") return text === "true";
  if (typeof original === "number") return Number(text);
  return text;
}

async function recordDetail(ctx, main, entity, id) {
  const [d, hist] = await Promise.all([api.get(`/api/v1/supervise/${entity}/${id}`), api.get(`/api/v1/supervise/${entity}/${id}/history`)]);
  const rec = d.record;
  const members =
    entity === "household" ? await api.get("/api/v1/supervise/person", { household: id, limit: 50 }) : null;
  const keys = [...new Set([...Object.keys(d.labels), ...Object.keys(rec.fields)])];
  const inputs = {};
  const rows = keys.map((k) => {
    const v = rec.fields[k];
    const input = h("input", { value: v === undefined || v === null ? "" : String(v), "aria-label": label(d.labels[k]) || k, name: k });
    inputs[k] = input;
    return h("tr", {}, h("th", { scope: "row" }, label(d.labels[k]) || k), h("td", {}, input));
  });
  const reason = h("input", { id: "edit-reason", placeholder: t("reason"), "aria-label": t("reason") });
  const msg = h("p", { role: "status", id: "edit-msg" });
  const save = async (e) => {
    e.preventDefault();
    const set = {};
    for (const [k, input] of Object.entries(inputs)) {
      const old = rec.fields[k];
      const shown = old === undefined || old === null ? "" : String(old);
      if (input.value !== shown) set[k] = parseLike(old, input.value);
    }
    if (!Object.keys(set).length) return (msg.textContent = t("nothing_changed"));
    if (!reason.value.trim()) return (msg.textContent = t("reason_required"));
    try {
      await api.post(`/api/v1/supervise/records/${entity}/${id}`, { base_version: rec.version, set, reason: reason.value.trim() });
      ctx.go("ledgers", { entity, id });
    } catch (err) {
      msg.textContent = err.message;
    }
  };
  const timeline = h(
    "ol",
    { class: "timeline", id: "versions" },
    [...hist.versions].reverse().map((v) =>
      h(
        "li",
        {},
        h("strong", {}, `${t("version")} ${v.version}`),
        ` · ${when(v.recorded_at)} · ${v.username || v.user_id}${v.device_id ? ` · ${t("device")} ${v.device_id.slice(0, 8)}` : ""}`,
        h("ul", {}, v.changes.map((c) => h("li", {}, `${label(c.label) || c.field}: ${show(c.from)} → ${show(c.to)}`))),
      ),
    ),
  );
  clear(
    main,
    h("h1", {}, `${label(d.entity_label)} · ${show(rec.fields.name || rec.id.slice(0, 8))}`),
    h("p", {}, h("button", { type: "button", class: "link", onclick: () => ctx.go("ledgers") }, `${t("back_to")} ${t("nav_ledgers")}`)),
    h("form", { id: "record-edit", onsubmit: save }, table([t("field"), t("value")], rows), h("p", { class: "actions" }, reason, h("button", { type: "submit", id: "save-record" }, t("save"))), msg),
    d.flags.length ? section(t("flags"), h("ul", {}, d.flags.map((f) => h("li", {}, getLang() === "en" ? f.en : f.zh)))) : null,
    d.linked.length
      ? section(
          t("linked"),
          h("ul", {}, d.linked.map((l) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => ctx.go("ledgers", { entity: l.record.entity, id: l.record.id }) }, `${label(l.entity_label)} · ${show(l.record.fields.name || l.record.fields.date || l.record.id.slice(0, 8))}`)))),
        )
      : null,
    members
      ? section(
          `${t("members")} (${members.total})`,
          h(
            "ul",
            { id: "household-members" },
            members.items.map((m) =>
              h("li", { dataset: { record: m.id } }, h("button", { type: "button", class: "link", onclick: () => ctx.go("ledgers", { entity: "person", id: m.id }) }, `${show(m.fields.name)} · ${show(m.fields.id_number)}`)),
            ),
          ),
        )
      : null,
    section(t("versions"), timeline),
  );
}

// 设备 devices -----------------------------------------------------------------------------

async function devices(ctx, main) {
  const msg = h("p", { class: "error", role: "alert" });
  const dbody = h("tbody");
  const wbody = h("tbody");
  const revoke = (id) => async () => {
    if (!window.confirm(t("confirm_revoke"))) return;
    try {
      await api.post(`/api/v1/devices/${id}/revoke`);
      ctx.rerender();
    } catch (e) {
      msg.textContent = e.message;
    }
  };
  const dp = pager(
    (after) => api.get("/api/v1/supervise/devices/status", { after, limit: 50 }),
    (page, first) => {
      if (first) dbody.replaceChildren();
      for (const d of page.items) {
        dbody.append(
          h(
            "tr",
            { dataset: { device: d.device_id } },
            h("th", { scope: "row" }, d.device_name),
            h("td", {}, `${d.display_name} (${d.username})`),
            h("td", {}, d.villages.join(", ")),
            h("td", {}, when(d.last_push_at)),
            h("td", {}, when(d.last_pull_at)),
            h("td", { class: "num" }, String(d.days_since_sync)),
            h("td", { class: "num" }, String(d.rejected_ops)),
            h("td", {}, d.revoked_at ? t("revoked") : h("button", { type: "button", class: "revoke", onclick: revoke(d.device_id) }, t("revoke"))),
          ),
        );
      }
    },
  );
  const wp = pager(
    (after) => api.get("/api/v1/supervise/workers/status", { after, limit: 50 }),
    (page, first) => {
      if (first) wbody.replaceChildren();
      for (const w of page.items) {
        wbody.append(
          h(
            "tr",
            {},
            h("th", { scope: "row" }, `${w.display_name} (${w.username})`),
            h("td", {}, w.villages.join(", ")),
            h("td", { class: "num" }, `${w.active_devices}/${w.devices}`),
            h("td", {}, when(w.last_push_at)),
            h("td", {}, when(w.last_pull_at)),
            h("td", { class: "num" }, String(w.days_since_sync)),
            h("td", { class: "num" }, String(w.rejected_ops)),
          ),
        );
      }
    },
  );
  const head = (cols) => h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c))));
  clear(
    main,
    h("h1", {}, t("nav_devices")),
    msg,
    section(t("devices"), h("div", { class: "scroll" }, h("table", { id: "devices" }, head([t("device"), t("worker"), t("villages"), t("last_push"), t("last_pull"), t("days_since"), t("rejected_ops"), ""]), dbody)), dp.box),
    section(t("workers"), h("div", { class: "scroll" }, h("table", { id: "workers" }, head([t("worker"), t("villages"), t("devices"), t("last_push"), t("last_pull"), t("days_since"), t("rejected_ops")]), wbody)), wp.box),
  );
  await Promise.all([dp.start(), wp.start()]);
}

// 目标 targets -----------------------------------------------------------------------------

const INDICATORS = [
  "crude_birth_rate",
  "crude_death_rate",
  "natural_growth_rate",
  "policy_compliant_birth_rate",
  "sex_ratio_at_birth",
  "contraceptive_prevalence",
  "long_acting_measure_rate",
  "check_coverage",
  "follow_up_rate",
  "certificate_rate",
  "check_rate",
  "first_child_share",
  "hospital_delivery_rate",
  "long_acting_timeliness",
  "one_child_certificate_rate",
  "late_marriage_rate",
  "information_accuracy",
  "supply_use_rate",
  "policy_compliant_birth_rate_resident",
  "policy_compliant_birth_rate_floating",
];

const targetState = { unit: null, year: null };

/** The indicators' labels in the current language (`{labels}` of a report), asked once. */
const labelCache = {};
async function indicatorLabels(ctx) {
  const l = lang();
  if (!labelCache[l]) {
    const r = await api.get("/api/v1/reports", { org_unit: ctx.root, period: thisMonth(), lang: l });
    labelCache[l] = { labels: r.labels };
  }
  return labelCache[l];
}

async function targets(ctx, main) {
  const s = targetState;
  if (!s.unit) s.unit = ctx.children.length ? ctx.children[0].code : ctx.root;
  if (!s.year) s.year = new Date().getFullYear();
  const [rep, rows] = await Promise.all([indicatorLabels(ctx), api.get("/api/v1/targets", { org_unit: s.unit, year: s.year })]);
  const unit = h("select", { id: "target-unit", "aria-label": t("unit") }, ctx.children.map((u) => h("option", { value: u.code, selected: u.code === s.unit }, u.name)));
  const year = h("input", { id: "target-year", type: "number", value: s.year, "aria-label": t("year"), size: 6 });
  const ind = h("select", { id: "target-indicator", "aria-label": t("indicator") }, INDICATORS.map((k) => h("option", { value: k }, indicatorName(rep, k))));
  const dir = h("select", { id: "target-direction", "aria-label": t("direction") }, ["at_least", "at_most"].map((d) => h("option", { value: d }, t(d))));
  const val = h("input", { id: "target-value", type: "number", step: "0.01", "aria-label": t("value"), size: 8 });
  const msg = h("p", { class: "error", role: "alert" });
  clear(
    main,
    h("h1", {}, t("nav_targets")),
    h(
      "form",
      {
        class: "filters",
        onsubmit: (e) => {
          e.preventDefault();
          Object.assign(s, { unit: unit.value, year: Number(year.value) });
          ctx.rerender();
        },
      },
      unit,
      year,
      h("button", { type: "submit" }, t("show")),
    ),
    table(
      [t("indicator"), t("direction"), t("target"), t("set_by")],
      rows.map((r) => h("tr", { dataset: { indicator: r.indicator } }, h("th", { scope: "row" }, indicatorName(rep, r.indicator)), h("td", {}, t(r.direction)), h("td", { class: "num" }, String(r.value)), h("td", {}, `${r.set_by} · ${when(r.set_at)}`))),
      { id: "targets" },
    ),
    h(
      "form",
      {
        class: "filters",
        id: "target-form",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            await api.put("/api/v1/targets", { org_unit: s.unit, year: s.year, targets: [{ indicator: ind.value, direction: dir.value, value: Number(val.value) }] });
            ctx.rerender();
          } catch (err) {
            msg.textContent = err.message;
          }
        },
      },
      ind,
      dir,
      val,
      h("button", { type: "submit", id: "set-target" }, t("add_target")),
    ),
    msg,
  );
}

// 用户 users (admin) -----------------------------------------------------------------------

async function users(ctx, main) {
  const [list, devs] = await Promise.all([api.get("/api/v1/users"), api.get("/api/v1/devices")]);
  const msg = h("p", { class: "error", role: "alert" });
  const deviceRow = (d) =>
    h(
      "tr",
      { dataset: { device: d.id } },
      h("th", { scope: "row" }, d.name),
      h("td", {}, d.username),
      h("td", {}, when(d.last_push_at)),
      h("td", {}, when(d.last_pull_at)),
      h(
        "td",
        {},
        d.revoked_at
          ? t("revoked")
          : h(
              "button",
              {
                type: "button",
                class: "revoke",
                onclick: async () => {
                  if (!window.confirm(t("confirm_revoke"))) return;
                  try {
                    await api.post(`/api/v1/devices/${d.id}/revoke`);
                    ctx.rerender();
                  } catch (e) {
                    msg.textContent = e.message;
                  }
                },
              },
              t("revoke"),
            ),
      ),
    );
  const devBody = h("tbody", {}, devs.map(deviceRow));
  const f = {
    username: h("input", { id: "new-username", "aria-label": t("username"), placeholder: t("username") }),
    display_name: h("input", { id: "new-name", "aria-label": t("display_name"), placeholder: t("display_name") }),
    password: h("input", { id: "new-password", type: "password", autocomplete: "new-password", "aria-label": t("password"), placeholder: t("password") }),
    role: h("select", { id: "new-role", "aria-label": t("role") }, ["worker", "township_supervisor", "county_supervisor", "admin"].map((r) => h("option", { value: r }, t(`role_${r}`)))),
    org_unit: h("input", { id: "new-unit", "aria-label": t("org_unit"), placeholder: t("org_unit") }),
    villages: h("input", { id: "new-villages", "aria-label": t("villages"), placeholder: t("villages") }),
  };
  const create = async (e) => {
    e.preventDefault();
    const role = f.role.value;
    try {
      await api.post("/api/v1/users", {
        username: f.username.value.trim(),
        display_name: f.display_name.value.trim(),
        password: f.password.value,
        role,
        org_unit: role.endsWith("supervisor") ? f.org_unit.value.trim() : null,
        villages: role === "worker" ? f.villages.value.split(/[,\s]+/).filter(Boolean) : [],
      });
      ctx.rerender();
    } catch (err) {
      msg.textContent = err.message;
    }
  };
  // A worker's villages (their sync scope, read from the database at each request).
  const villagesEditor = (u) => {
    const input = h("input", { class: "villages-input", value: u.villages.join(", "), "aria-label": `${t("villages")} ${u.username}`, size: 16 });
    const done = h("span", { class: "saved hint", role: "status" });
    const save = async () => {
      msg.textContent = done.textContent = "";
      try {
        const v = await api.put(`/api/v1/users/${u.id}/villages`, { villages: input.value.split(/[,\s]+/).filter(Boolean) });
        input.value = v.villages.join(", ");
        done.textContent = t("villages_saved");
      } catch (e) {
        msg.textContent = e.message;
      }
    };
    return h("span", { class: "actions" }, input, h("button", { type: "button", class: "save-villages", onclick: save }, t("save_villages")), done);
  };
  // An admin registers a phone for a worker; the phone enrols with the one-time code shown here.
  const enrolment = h("div", { id: "enrolment", role: "status" });
  const deviceForm = (u) => {
    const name = h("input", { class: "device-name", "aria-label": `${t("device_name")} ${u.username}`, placeholder: t("device_name"), size: 12 });
    const register = async () => {
      msg.textContent = "";
      try {
        const e = await api.post(`/api/v1/users/${u.id}/devices`, { name: name.value.trim() });
        const link = enrolmentLink(e.enrolment_code);
        clear(
          enrolment,
          h(
            "section",
            { class: "notice" },
            h("h2", {}, `${t("enrolment_code")} · ${u.display_name} (${u.username}) · ${e.device.name}`),
            h("p", { class: "code", id: "enrolment-code" }, e.enrolment_code),
            h("p", {}, t("enrolment_hint", { hours: String(Math.round((e.expires_at - Date.now() * 1000) / 3.6e9)) }), ` ${t("expires_at")}: ${when(e.expires_at)}`),
            h("div", { id: "enrolment-qr-box" }),
            h("p", {}, t("enrolment_link_hint"), " ", h("a", { id: "enrolment-link", href: link, rel: "noreferrer" }, t("enrolment_link"))),
          ),
        );
        qrSvg(link, t("enrolment_qr"))
          .then((svg) => enrolment.querySelector("#enrolment-qr-box")?.append(svg))
          .catch((err) => (msg.textContent = `${t("enrolment_qr")}: ${err.message}`));
        name.value = "";
        const d = e.device;
        devBody.prepend(deviceRow(d));
      } catch (err) {
        msg.textContent = err.message;
      }
    };
    return h("span", { class: "actions" }, name, h("button", { type: "button", class: "register-device", onclick: register }, t("register_device")));
  };
  clear(
    main,
    h("h1", {}, t("nav_users")),
    h("form", { class: "filters", id: "user-form", onsubmit: create }, Object.values(f), h("button", { type: "submit" }, t("create_user"))),
    msg,
    enrolment,
    table(
      [t("username"), t("display_name"), t("role"), t("org_unit"), t("villages"), t("status"), t("devices")],
      list.map((u) => h("tr", { dataset: { user: u.username } }, h("th", { scope: "row" }, u.username), h("td", {}, u.display_name), h("td", {}, t(`role_${u.role}`)), h("td", {}, u.org_unit || "—"), h("td", {}, u.role === "worker" ? villagesEditor(u) : u.villages.join(", ")), h("td", {}, u.active ? t("active") : "—"), h("td", {}, u.role === "worker" && u.active ? deviceForm(u) : null))),
      { id: "users" },
    ),
    section(
      t("devices"),
      h(
        "div",
        { class: "scroll" },
        h("table", { id: "user-devices" }, h("thead", {}, h("tr", {}, [t("device"), t("username"), t("last_push"), t("last_pull"), t("status")].map((c) => h("th", { scope: "col" }, c)))), devBody),
      ),
    ),
  );
}

export const PAGES = { overview, report, conflicts, duplicates, quality, ledgers, devices, targets, users };
