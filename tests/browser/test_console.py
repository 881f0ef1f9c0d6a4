"""The supervisor console on the demo county, in Chromium: sign-in, every page in zh-CN and
English, the overview against the report API, approval, a conflict made by two devices
resolved and pulled, a duplicate merged and the merge undone, the XLSX download, and who sees
what. Page times are recorded (never asserted) in console-timings-<backend>.json under
FIELDSYNC_TEST_ARTIFACTS (or the temp dir)."""

import datetime
import json
import os
import tempfile
import time
import uuid

import pytest

from conftest import BASE, ARTIFACTS, api, login, screenshot

BACKEND = os.environ.get("FIELDSYNC_BACKEND", "sqlite")
SUPERVISOR_PAGES = ["overview", "report", "conflicts", "duplicates", "quality", "ledgers", "devices", "targets"]
# Signed in, the overview is already open: visit it last to time a visit from another page.
TIMED_ORDER = SUPERVISOR_PAGES[1:] + ["overview"]
VILLAGE = "130131100201"  # the first village of the demo township 130131100
TIMINGS = {}


@pytest.fixture(scope="module", autouse=True)
def record_timings():
    yield
    out = ARTIFACTS or tempfile.gettempdir()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"console-timings-{BACKEND}.json"), "w") as f:
        json.dump(TIMINGS, f, indent=1, sort_keys=True)


def this_month():
    d = datetime.date.today()
    return f"{d.year}-{d.month:02d}"


def last_month():
    return months_ago(1)


def months_ago(n):
    d = datetime.date.today().replace(day=1)
    for _ in range(n):
        d = (d - datetime.timedelta(days=1)).replace(day=1)
    return f"{d.year}-{d.month:02d}"


def show_report(page, period, unit=None):
    """On the report page: picks the unit and the month, and waits for the report drawn."""
    if unit:
        page.select_option("#report-unit", unit)
    page.select_option("#period-kind", "month")
    page.fill("#period", period)
    page.evaluate("document.getElementById('page').removeAttribute('data-ready')")
    page.click("#show-report")
    wait_ready(page, "report")


def sign_in(context, username):
    page = context.new_page()
    page.goto(BASE + "/")
    page.fill("#username", username)
    page.fill("#password", os.environ["FIELDSYNC_DEMO_PASSWORD"])
    page.click("#signin")
    page.wait_for_selector("#who")
    return page


def open_page(page, name, key=None):
    """Opens a page from the navigation and waits until it has drawn; returns milliseconds."""
    page.evaluate("document.getElementById('page').removeAttribute('data-ready')")
    started = time.monotonic()
    page.click(f"#nav-{name}")
    page.wait_for_selector(f'#page[data-ready="{name}"]', timeout=30000)
    ms = round((time.monotonic() - started) * 1000)
    if key:
        TIMINGS[key] = {"wall_ms": ms, "page_ms": int(page.get_attribute("#page", "data-ms"))}
    assert page.get_attribute("#page", "data-ready") == name
    return ms


def wait_ready(page, name):
    page.wait_for_selector(f'#page[data-ready="{name}"]', timeout=30000)


def no_missing_labels(page):
    text = page.inner_text("body")
    assert "⟦" not in text, text[:2000]


def test_labels_of_both_languages_have_the_same_keys(context):
    page = context.new_page()
    page.goto(BASE + "/")
    keys = page.evaluate(
        """async () => { const m = (await import('/console/i18n.js')).MESSAGES;
           return [Object.keys(m['zh-CN']).sort(), Object.keys(m.en).sort()]; }"""
    )
    zh, en = keys
    assert sorted(set(zh) - set(en)) == [] and sorted(set(en) - set(zh)) == []
    assert len(zh) > 100


def test_county_sets_township_targets(context):
    page = sign_in(context, "county")
    wait_ready(page, "overview")
    open_page(page, "targets", "targets (county)")
    page.select_option("#target-unit", "130131100")
    page.click("#page .filters button[type=submit]")
    wait_ready(page, "targets")
    for indicator, direction, value in [
        ("contraceptive_prevalence", "at_least", "88"),
        ("policy_compliant_birth_rate", "at_least", "94"),
        ("long_acting_measure_rate", "at_least", "85"),
        ("crude_birth_rate", "at_most", "10"),
        ("follow_up_rate", "at_least", "90"),
        ("long_acting_timeliness", "at_least", "85"),
    ]:
        page.select_option("#target-indicator", indicator)
        page.select_option("#target-direction", direction)
        page.fill("#target-value", value)
        page.click("#set-target")
        page.wait_for_selector(f'#targets tr[data-indicator="{indicator}"]')
    _, rows = api("GET", f"/api/v1/targets?org_unit=130131100&year={datetime.date.today().year}", login("county"))
    assert {r["indicator"]: r["value"] for r in rows}["contraceptive_prevalence"] == 88
    page.click("#signout")
    page.wait_for_selector("#signin")


def test_sign_in_every_page_in_chinese_and_english(context, errors):
    page = context.new_page()
    r = page.goto(BASE + "/")
    assert r.status == 200
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.inner_text("#signin") == "登录"
    page.fill("#username", "township")
    page.fill("#password", "wrong password")
    page.click("#signin")
    page.wait_for_selector(".signin .error:has-text('用户名或密码错误')")
    # The browser logs the refused sign-in's 401 itself; that one is expected.
    assert all("401" in e for e in errors.errors), errors.errors
    errors.errors.clear()
    page.fill("#password", os.environ["FIELDSYNC_DEMO_PASSWORD"])
    page.click("#signin")
    wait_ready(page, "overview")
    TIMINGS["overview right after sign-in (township)"] = {"page_ms": int(page.get_attribute("#page", "data-ms"))}
    assert page.inner_text("#role") == "乡镇计生办"
    assert page.inner_text("#unit") == "平山镇"
    assert "township" in page.inner_text("#who")
    page.wait_for_selector('#page[data-trends="drawn"]')
    screenshot(page, "console-overview-zh.png")
    for name in TIMED_ORDER:
        open_page(page, name, f"{name} (township, zh-CN)")
        no_missing_labels(page)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        if name == "report":
            screenshot(page, "console-report-zh.png")
    # No token or refresh token in storage or the URL; a reload resumes from the cookie.
    stored = page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert "eyJ" not in stored and "token" not in stored.lower(), stored
    assert "token" not in page.url
    page.reload()
    wait_ready(page, "overview")
    page.click("#lang")
    wait_ready(page, "overview")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.inner_text("#nav-overview") == "Overview"
    assert page.inner_text("#role") == "township supervisor"
    for name in TIMED_ORDER:
        open_page(page, name, f"{name} (township, en)")
        no_missing_labels(page)
        if name == "overview":
            # indicator names come from the API's lang=en labels
            assert "contraceptive prevalence" in page.inner_text("#key-indicators")
            page.wait_for_selector('#page[data-trends="drawn"]')
            screenshot(page, "console-overview-en.png")
    page.click("#lang")
    page.click("#signout")
    page.wait_for_selector("#signin")
    page.reload()
    page.wait_for_selector("#signin")


def test_phone_width_has_no_horizontal_page_scroll(browser, errors):
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 360, "height": 740})
    ctx.on("page", errors.watch)
    page = sign_in(ctx, "county")
    wait_ready(page, "overview")
    for name in TIMED_ORDER:
        open_page(page, name, f"{name} (county, 360 px)")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{name}: {width}"
        if name == "overview":
            page.wait_for_selector('#page[data-trends="drawn"]')
            screenshot(page, "console-overview-phone.png")
    ctx.close()


def test_overview_shows_the_figures_of_the_report_api(context):
    token = login("township")
    _, rep = api("GET", f"/api/v1/reports?org_unit=130131100&period={this_month()}", token)
    _, conflicts = api("GET", "/api/v1/supervise/conflicts?status=open&limit=1", token)
    _, dups = api("GET", "/api/v1/supervise/duplicates?limit=1", token)
    _, flags = api("GET", "/api/v1/supervise/flags/summary", token)
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    shown = 0
    for row in rep["indicators"]:
        card = page.locator(f'#key-indicators [data-indicator="{row["indicator"]}"]')
        if card.count() == 0:
            continue
        shown += 1
        value = card.locator(".value").get_attribute("data-value")
        assert value == ("" if row["value"] is None else str(row["value"]).removesuffix(".0")) or (
            row["value"] is not None and float(value) == row["value"]
        ), (row, value)
    assert shown >= 5
    assert int(page.inner_text("#count-conflicts .n")) == conflicts["total"]
    assert int(page.inner_text("#count-duplicates .n")) == dups["total"]
    assert int(page.inner_text("#count-flags .n")) == flags["total"]
    ranking = page.locator("#ranking tbody tr")
    assert ranking.count() == 4  # the township's four villages
    # The ranking's indicator is the user's pick, worst first as the API's order=worst ranks.
    for indicator in ["crude_birth_rate", "long_acting_measure_rate"]:
        page.select_option("#ranking-indicator", indicator)
        page.wait_for_selector(f'#ranking[data-ranked-by="{indicator}"]')
        _, worst = api("GET", f"/api/v1/reports/breakdown?org_unit=130131100&period={this_month()}&sort={indicator}&order=worst", token)
        shown = [ranking.nth(i).get_attribute("data-unit") for i in range(ranking.count())]
        assert shown == [r["org_unit"]["code"] for r in worst["rows"]], (indicator, shown)
    page.wait_for_selector('#page[data-trends="drawn"]')
    assert page.locator("#key-indicators svg").count() >= 5  # the ECharts trends
    # Each trend line ends with this month's figure, and its earlier points are those months'
    # reports (two checked here, from the report API).
    for key in ["contraceptive_prevalence", "crude_birth_rate"]:
        points = json.loads(page.get_attribute(f'[data-chart="{key}"]', "data-points"))
        assert len(points) == 12, points
        this = next(r for r in rep["indicators"] if r["indicator"] == key)
        assert points[-1] == this["value"], (key, points, this)
        _, before = api("GET", f"/api/v1/reports?org_unit=130131100&period={last_month()}", token)
        last = next(r for r in before["indicators"] if r["indicator"] == key)
        assert points[-2] == last["value"], (key, points, last)
    page.click("#count-conflicts")
    wait_ready(page, "conflicts")


def register_device(username, name):
    token = login(username)
    status, body = api("POST", "/api/v1/devices", token, {"name": name, "app_version": "test"})
    assert status == 201, body
    return body["access_token"]


class Device:
    def __init__(self, username, name):
        self.token = register_device(username, name)
        self.seq = 1

    def push(self, entity, rid, kind, base, values):
        op = {
            "seq": self.seq,
            "op_id": str(uuid.uuid4()),
            "entity": entity,
            "id": rid,
            "kind": kind,
            "set": values,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if base is not None:
            op["base_version"] = base
        self.seq += 1
        status, body = api("POST", "/api/v1/sync/push", self.token, {"ops": [op]})
        assert status == 200, body
        return body["results"][0]

    def pull_all(self, cursor=0):
        records = {}
        while True:
            status, body = api("POST", "/api/v1/sync/pull", self.token, {"cursor": cursor})
            assert status == 200, body
            for rec in body["records"]:
                records[rec["id"]] = rec
            cursor = body["next_cursor"]
            if not body["has_more"]:
                return records, cursor


def test_approve_a_village_submission(context):
    phone = Device(f"w{VILLAGE}", "approval phone")
    status, sub = api("POST", "/api/v1/reports/submissions", phone.token, {"org_unit": VILLAGE, "period": last_month()})
    assert status == 201, sub
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "report")
    row = page.locator(f'#submissions tr[data-village="{VILLAGE}"]')
    assert row.locator(".status").inner_text() == "已上报"
    row.locator(".open-village").click()
    page.wait_for_selector("#approve")
    wait_ready(page, "report")
    page.click("#approve")
    page.wait_for_selector("#approval-status:has-text('已审核')")
    history = page.locator("#approval-history li")
    assert [history.nth(i).get_attribute("data-action") for i in range(history.count())] == ["submit", "approve"]
    assert "乡镇计生办" in history.nth(1).inner_text() and "township" in history.nth(1).inner_text()
    assert "村计生专干" in history.nth(0).inner_text()
    token = login("township")
    _, rep = api("GET", f"/api/v1/reports?org_unit={VILLAGE}&period={last_month()}", token)
    assert rep["approval"]["submission"]["status"] == "approved"
    assert rep["approval"]["submission"]["id"] == sub["id"]


def test_resolve_a_conflict_made_by_two_devices_then_pull(context):
    a = Device(f"w{VILLAGE}", "phone A")
    b = Device(f"w{VILLAGE}", "phone B")
    token = login("township")
    _, people = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&limit=1", token)
    person = people["items"][0]
    pid, version = person["id"], person["version"]
    choices = [v for v in ["divorced", "widowed", "remarried", "first_marriage"] if v != person["fields"].get("marital_status")]
    _, cursor = a.pull_all()
    a.push("person", pid, "update", version, {"marital_status": choices[0]})
    res = b.push("person", pid, "update", version, {"marital_status": choices[1]})
    assert res.get("conflicts"), res
    _, queue = api("GET", f"/api/v1/supervise/conflicts?status=open&village={VILLAGE}", token)
    cid = next(c["id"] for c in queue["items"] if c["record_id"] == pid)
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "conflicts", "conflicts with one open (township)")
    row = page.locator(f'#conflicts tr[data-conflict="{cid}"]')
    assert row.count() == 1
    assert row.locator(".server").inner_text() == choices[0]
    assert row.locator(".device").inner_text() == choices[1]
    page.fill("#conflict-reason", "村里核实：以B机为准")
    row.locator(".take-device").click()
    page.wait_for_selector(f'#conflicts tr[data-conflict="{cid}"]', state="detached")
    records, _ = a.pull_all(cursor)
    assert records[pid]["fields"]["marital_status"] == choices[1], records.get(pid)
    # It is in the resolved list with its reason (only a `latest` conflict can be reopened).
    page.select_option("#conflict-status", "resolved")
    page.click("#page .filters button[type=submit]")
    page.wait_for_selector(f'#conflicts tr[data-conflict="{cid}"]')
    assert page.locator(f'#conflicts tr[data-conflict="{cid}"] .reopen').count() == 0


def test_merge_a_duplicate_pair_and_undo_it(context):
    token = login("township")
    _, people = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&limit=5", token)
    original = people["items"][2]
    _, detail = api("GET", f"/api/v1/supervise/person/{original['id']}", token)
    fields = dict(detail["record"]["fields"])
    phone = Device(f"w{VILLAGE}", "duplicate phone")
    twin = str(uuid.uuid4())
    values = {k: fields[k] for k in ["id_number", "sex", "birth_date", "residence", "marital_status"] if fields.get(k) is not None}
    values.update({"org_unit": VILLAGE, "name": fields["name"] + "某", "phone": "13900000000"})
    phone.push("person", twin, "create", None, values)
    _, dups = api("GET", f"/api/v1/supervise/duplicates?village={VILLAGE}", token)
    assert any({p["a"]["id"], p["b"]["id"]} == {original["id"], twin} for p in dups["items"]), dups
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "duplicates", "duplicates with one pair (township)")
    pair = page.locator(f'.pair[data-a="{original["id"]}"][data-b="{twin}"], .pair[data-a="{twin}"][data-b="{original["id"]}"]')
    assert pair.count() == 1
    assert pair.locator("tr.diff").count() >= 1
    pair.locator(".dup-reason").fill("同一身份证号")
    pair.locator(".merge").click()
    pair.wait_for(state="detached")
    _, after = api("GET", f"/api/v1/supervise/duplicates?village={VILLAGE}", token)
    assert not any({p["a"]["id"], p["b"]["id"]} == {original["id"], twin} for p in after["items"])
    _, merges = api("GET", f"/api/v1/supervise/merges?village={VILLAGE}&limit=1", token)
    merge = merges["items"][0]
    assert {merge["survivor"]["id"], merge["merged"]["id"]} == {original["id"], twin}, merge
    item = f'#recent-merges li[data-merge="{merge["merge_id"]}"]'
    page.click(f"{item} .undo-merge")
    page.wait_for_selector(f"{item} .undo-merge", state="detached")
    wait_ready(page, "duplicates")
    assert page.locator(f"{item} .undone").count() == 1
    s1, one = api("GET", f"/api/v1/supervise/person/{original['id']}", token)
    s2, two = api("GET", f"/api/v1/supervise/person/{twin}", token)
    assert s1 == 200 and s2 == 200
    assert one["record"].get("merged_into") is None and two["record"].get("merged_into") is None


def test_download_the_report_as_xlsx_and_read_it(context, tmp_path):
    import openpyxl

    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "report")
    with page.expect_download() as dl:
        page.click("#download-xlsx")
    path = tmp_path / "report.xlsx"
    dl.value.save_as(path)
    wb = openpyxl.load_workbook(path, read_only=True)
    cells = [str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for c in row if c is not None]
    assert "综合避孕率" in cells, cells[:40]
    token = login("township")
    _, rep = api("GET", f"/api/v1/reports?org_unit=130131100&period={last_month()}", token)
    cp = next(r for r in rep["indicators"] if r["indicator"] == "contraceptive_prevalence")
    assert str(cp["numerator"]) in cells and str(cp["denominator"]) in cells


def test_ledger_search_detail_history_and_direct_edit(context):
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "ledgers", "ledgers persons (township)")
    total = page.inner_text("#ledger-total")
    first = page.locator("#ledger tbody tr").first
    assert "*" in first.inner_text(), "ID numbers are masked in the list"
    first.locator(".open-record").click()
    wait_ready(page, "ledgers")
    page.wait_for_selector("#versions li")
    assert page.url.endswith("#/ledgers"), "nothing personal in the URL"
    notes = page.locator('#record-edit input[name="notes"]')
    notes.fill("console edit")
    page.fill("#edit-reason", "核对户籍")
    page.click("#save-record")
    page.wait_for_selector("#versions > li:first-child:has-text('console edit')")
    assert total


def test_worker_cannot_open_supervisor_pages(context):
    page = sign_in(context, f"w{VILLAGE}")
    page.wait_for_selector("#not-for-role")
    assert page.locator("nav a").count() == 0
    for name in SUPERVISOR_PAGES + ["users"]:
        page.goto(f"{BASE}/#/{name}")
        page.wait_for_selector("#not-for-role")
    token = login(f"w{VILLAGE}")
    status, _ = api("GET", "/api/v1/reports?org_unit=130131100", token)
    assert status == 403


def test_county_sees_every_township_a_township_only_its_own(context):
    county = sign_in(context, "county")
    wait_ready(county, "overview")
    token = login("county")
    _, bd = api("GET", f"/api/v1/reports/breakdown?org_unit=130131&period={this_month()}", token)
    townships = sorted(r["org_unit"]["name"] for r in bd["rows"])
    assert len(townships) == 3
    shown = sorted(county.locator("#ranking tbody th").all_inner_texts())
    assert shown == townships
    open_page(county, "report", "report (county)")
    options = county.locator("#report-unit option").all_inner_texts()
    assert all(name in options for name in townships)
    screenshot(county, "console-report-county.png")
    county.click("#signout")
    county.wait_for_selector("#signin")
    township = sign_in(context, "township")
    wait_ready(township, "overview")
    open_page(township, "report")
    options = township.locator("#report-unit option").all_inner_texts()
    assert [o for o in options if o in townships] == ["平山镇"], options
    ttoken = login("township")
    status, _ = api("GET", "/api/v1/reports?org_unit=130131102&period=2026-11", ttoken)
    assert status == 404


def test_township_revokes_a_device_on_the_devices_page(context):
    Device(f"w{VILLAGE}", "lost phone")
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "devices", "devices with phones (township)")
    row = page.locator("#devices tbody tr", has_text="lost phone")
    assert row.count() == 1
    page.once("dialog", lambda d: d.accept())
    row.locator(".revoke").click()
    page.wait_for_selector("#devices tbody tr:has-text('lost phone') .revoke", state="detached")
    _, devices = api("GET", "/api/v1/devices", login("township"))
    assert [d["status"] for d in devices if d["name"] == "lost phone"] == ["revoked"]


def test_admin_manages_users(context):
    page = sign_in(context, "admin")
    wait_ready(page, "users")
    assert page.locator("nav a").all_inner_texts() == ["用户"]
    assert "township" in page.inner_text("#users")
    page.fill("#new-username", "zhen2")
    page.fill("#new-name", "新乡镇用户")
    page.fill("#new-password", "a long enough password")
    page.select_option("#new-role", "township_supervisor")
    page.fill("#new-unit", "130131102")
    page.click("#user-form button[type=submit]")
    page.wait_for_selector("#users th:has-text('zhen2')")
    status, _ = api("POST", "/api/v1/auth/login", body={"username": "zhen2", "password": "a long enough password"})
    assert status == 200


def township_villages(token, period):
    _, comp = api("GET", f"/api/v1/reports/completeness?org_unit=130131100&period={period}", token)
    return {r["org_unit"]["code"]: (r.get("status") or "none") for r in comp["rows"]}


def submission_of(token, village, period):
    _, rep = api("GET", f"/api/v1/reports?org_unit={village}&period={period}", token)
    return (rep.get("approval") or {}).get("submission")


def test_return_a_submission_with_a_reason_then_the_county_locks_the_month(context):
    # Its own month (two months back): the approval test's month (last month) is neither
    # needed nor locked here, so each passes alone and in any order.
    period = months_ago(2)
    token = login("township")
    villages = township_villages(token, period)
    target = next(v for v, st in sorted(villages.items()) if v != VILLAGE and st in ("none", "returned"))
    phone = Device(f"w{target}", "returned phone")
    status, sub = api("POST", "/api/v1/reports/submissions", phone.token, {"org_unit": target, "period": period})
    assert status in (200, 201), sub
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "report")
    show_report(page, period)
    page.locator(f'#submissions tr[data-village="{target}"] .open-village').click()
    page.wait_for_selector("#return")
    wait_ready(page, "report")
    page.click("#return")  # without a reason: refused in the page
    page.wait_for_selector("#approval .error:has-text('原因')")
    reason = "出生数与台账不符，请核对"
    page.fill("#approval-reason", reason)
    page.click("#return")
    page.wait_for_selector("#approval-status:has-text('已退回')")
    assert reason in page.inner_text("#approval-history")
    got = submission_of(token, target, period)
    assert got["status"] == "returned" and got["comment"] == reason, got
    # Every village of the township approved (through the API), then the county locks the month.
    for v, st in sorted(township_villages(token, period).items()):
        if st in ("none", "returned"):
            status, body = api("POST", "/api/v1/reports/submissions", Device(f"w{v}", "lock phone").token, {"org_unit": v, "period": period})
            assert status in (200, 201), body
            st = "submitted"
        if st == "submitted":
            s = submission_of(token, v, period)
            status, body = api("POST", f"/api/v1/reports/submissions/{s['id']}/approve", token)
            assert status == 200, body
    page.click("#signout")
    page.wait_for_selector("#signin")
    county = sign_in(context, "county")
    wait_ready(county, "overview")
    open_page(county, "report", "report (county)")
    show_report(county, period, "130131100")
    county.wait_for_selector("#lock")
    county.click("#lock")
    county.wait_for_function(
        "() => [...document.querySelectorAll('#submissions .status')].every(e => e.textContent === '已锁定')"
        " && document.querySelectorAll('#submissions .status').length > 0"
    )
    assert set(township_villages(token, period).values()) == {"locked"}
    # The returned village's history: every action with who, role and the reason.
    county.locator(f'#submissions tr[data-village="{target}"] .open-village').click()
    county.wait_for_selector("#approval-history li")
    wait_ready(county, "report")
    items = county.locator("#approval-history li")
    actions = [items.nth(i).get_attribute("data-action") for i in range(items.count())]
    assert actions == ["submit", "return", "resubmit", "approve", "lock"], actions
    assert reason in items.nth(1).inner_text()
    assert "县卫健局" in items.nth(4).inner_text() and "county" in items.nth(4).inner_text()


def conflict_row(page, cid):
    row = page.locator(f'#conflicts tr[data-conflict="{cid}"]')
    for _ in range(20):
        if row.count() or page.locator("#page .pager .more").is_hidden():
            break
        page.click("#page .pager .more")
        page.wait_for_timeout(300)
    return row


def test_bulk_resolve_then_reopen_a_settled_conflict(context):
    a = Device(f"w{VILLAGE}", "bulk phone A")
    b = Device(f"w{VILLAGE}", "bulk phone B")
    token = login("township")
    _, people = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&limit=8", token)
    targets = people["items"][3:5]
    _, cursor = a.pull_all()
    wanted = {}
    for p in targets:
        choices = [v for v in ["divorced", "widowed", "remarried", "first_marriage"] if v != p["fields"].get("marital_status")]
        a.push("person", p["id"], "update", p["version"], {"marital_status": choices[0]})
        res = b.push("person", p["id"], "update", p["version"], {"marital_status": choices[1]})
        assert res.get("conflicts"), res
        wanted[p["id"]] = choices[1]
    _, queue = api("GET", f"/api/v1/supervise/conflicts?status=open&village={VILLAGE}&limit=500", token)
    cids = [c["id"] for c in queue["items"] if c["record_id"] in wanted]
    assert len(cids) == 2, queue
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "conflicts")
    for cid in cids:
        conflict_row(page, cid).locator("input[type=checkbox]").check()
    page.click("#bulk-device")  # no reason yet: refused in the page
    page.wait_for_selector("#page .error:has-text('原因')")
    page.fill("#conflict-reason", "入户核实，以B机为准")
    page.click("#bulk-device")
    for cid in cids:
        page.wait_for_selector(f'#conflicts tr[data-conflict="{cid}"]', state="detached")
    records, cursor = a.pull_all(cursor)
    assert {pid: records[pid]["fields"]["marital_status"] for pid in wanted} == wanted
    # A `latest` field changed by both phones is settled by itself; reopened, it is open again.
    p = targets[0]
    _, fresh = api("GET", f"/api/v1/supervise/person/{p['id']}", token)
    base = fresh["record"]["version"]
    a.push("person", p["id"], "update", base, {"notes": "A机备注"})
    b.push("person", p["id"], "update", base, {"notes": "B机备注"})
    _, settled = api("GET", f"/api/v1/supervise/conflicts?status=closed&village={VILLAGE}&limit=500", token)
    cid = next(c["id"] for c in settled["items"] if c["record_id"] == p["id"] and c["field"] == "notes")
    page.select_option("#conflict-status", "closed")
    page.click("#page .filters button[type=submit]")
    wait_ready(page, "conflicts")
    conflict_row(page, cid).locator(".reopen").click()
    page.wait_for_selector(f'#conflicts tr[data-conflict="{cid}"]', state="detached")
    _, reopened = api("GET", f"/api/v1/supervise/conflicts?status=open&village={VILLAGE}&limit=500", token)
    assert any(c["id"] == cid for c in reopened["items"]), reopened


def make_twin(token, index, phone_name):
    _, people = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&limit=12", token)
    original = people["items"][index]
    _, detail = api("GET", f"/api/v1/supervise/person/{original['id']}", token)
    fields = dict(detail["record"]["fields"])
    phone = Device(f"w{VILLAGE}", phone_name)
    twin = str(uuid.uuid4())
    values = {k: fields[k] for k in ["id_number", "sex", "birth_date", "residence", "marital_status"] if fields.get(k) is not None}
    values.update({"org_unit": VILLAGE, "name": fields["name"] + "甲", "phone": "13900000001"})
    phone.push("person", twin, "create", None, values)
    return original, twin, fields, phone


def test_dismiss_a_duplicate_pair(context):
    token = login("township")
    original, twin, _, _ = make_twin(token, 8, "dismiss phone")
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "duplicates")
    sel = f'.pair[data-a="{original["id"]}"][data-b="{twin}"], .pair[data-a="{twin}"][data-b="{original["id"]}"]'
    pair = page.locator(sel)
    assert pair.count() == 1
    pair.locator(".dismiss").click()  # a reason is required
    page.wait_for_selector("#page .error:has-text('原因')")
    pair.locator(".dup-reason").fill("同号不同人：身份证号录错，入户核实为两人")
    pair.locator(".dismiss").click()
    page.wait_for_selector(sel, state="detached")
    _, after = api("GET", f"/api/v1/supervise/duplicates?village={VILLAGE}&limit=500", token)
    assert not any({p["a"]["id"], p["b"]["id"]} == {original["id"], twin} for p in after["items"])
    _, dismissed = api("GET", f"/api/v1/supervise/duplicates/dismissed?village={VILLAGE}&limit=500", token)
    assert any({p["a"]["id"], p["b"]["id"]} == {original["id"], twin} for p in dismissed["items"]), dismissed


def test_undo_a_merge_made_before_this_page(context):
    token = login("township")
    original, twin, _, _ = make_twin(token, 9, "merged elsewhere phone")
    status, merged = api("POST", "/api/v1/supervise/duplicates/merge", token, {"survivor_id": original["id"], "merged_id": twin})
    assert status == 200, merged
    mid = merged["merge_id"]
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "duplicates")
    item = f'#recent-merges li[data-merge="{mid}"]'
    page.wait_for_selector(f"{item} .undo-merge")
    page.click(f"{item} .undo-merge")
    page.wait_for_selector(f"{item} .undone")
    s, back = api("GET", f"/api/v1/supervise/person/{twin}", token)
    assert s == 200 and back["record"].get("merged_into") is None, back
    status, _ = api("POST", f"/api/v1/supervise/merges/{mid}/undo", token)
    assert status == 409


def wrong_check_digit(number):
    return number[:-1] + ("1" if number[-1] != "1" else "2")


def test_logic_errors_by_village_and_check_drill_down_to_the_record(context):
    token = login("township")
    _, people = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&limit=12", token)
    _, detail = api("GET", f"/api/v1/supervise/person/{people['items'][10]['id']}", token)
    fields = detail["record"]["fields"]
    phone = Device(f"w{VILLAGE}", "typo phone")
    pid = str(uuid.uuid4())
    values = {k: fields[k] for k in ["sex", "birth_date", "residence", "marital_status"] if fields.get(k) is not None}
    values.update({"org_unit": VILLAGE, "name": "校验位错", "id_number": wrong_check_digit(fields["id_number"])})
    phone.push("person", pid, "create", None, values)
    _, flags = api("GET", f"/api/v1/supervise/flags?village={VILLAGE}&check=id_check_digit&limit=500", token)
    flag = next(f for f in flags["items"] if f["record_id"] == pid)
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "quality")
    assert page.locator('#flag-checks tr[data-check="id_check_digit"]').count() == 1
    page.click(f'#flag-villages .chip[data-village="{VILLAGE}"][data-check="id_check_digit"]')
    page.wait_for_selector("#flags tbody tr")
    row = page.locator(f'#flags tr[data-record="{pid}"]')
    for _ in range(20):
        if row.count() or page.locator("#flag-list .more").is_hidden():
            break
        page.click("#flag-list .more")
        page.wait_for_timeout(300)
    assert row.count() == 1
    row.locator(".open-record").click()
    wait_ready(page, "ledgers")
    page.wait_for_selector("#versions li")
    assert "校验位错" in page.inner_text("h1")
    assert flag["zh"] in page.inner_text("#page")
    assert page.url.endswith("#/ledgers")


def test_household_detail_lists_its_members(context):
    token = login("township")
    _, households = api("GET", f"/api/v1/supervise/household?village={VILLAGE}&limit=1", token)
    hh = households["items"][0]
    _, members = api("GET", f"/api/v1/supervise/person?household={hh['id']}&limit=50", token)
    assert members["total"] >= 1, "the demo's households have members"
    page = sign_in(context, "township")
    wait_ready(page, "overview")
    open_page(page, "ledgers")
    page.select_option("#ledger-entity", "household")
    page.select_option("#ledger-village", VILLAGE)
    page.click("#ledger-search")
    wait_ready(page, "ledgers")
    page.locator(f'#ledger tr[data-record="{hh["id"]}"] .open-record').click()
    page.wait_for_selector("#household-members li")
    assert page.locator("#household-members li").count() == min(members["total"], 50)
    first = members["items"][0]
    page.locator(f'#household-members li[data-record="{first["id"]}"] button').click()
    wait_ready(page, "ledgers")
    page.wait_for_selector("#versions li")
    assert first["fields"]["name"] in page.inner_text("h1")


def test_admin_registers_a_device_and_changes_a_workers_villages(context):
    """The users page: an admin moves a worker to another village and registers a phone for
    them; the phone enrols with the code shown, and syncs the new village, not the old one."""
    admin = login("admin")
    other_village = "130131100202"
    status, worker = api(
        "POST",
        "/api/v1/users",
        admin,
        {"username": "enrol_w", "display_name": "新专干", "password": "a long enough password", "role": "worker", "villages": [VILLAGE]},
    )
    assert status == 201, worker
    page = sign_in(context, "admin")
    wait_ready(page, "users")
    row = page.locator('#users tr[data-user="enrol_w"]')
    row.locator(".villages-input").fill(other_village)
    row.locator(".save-villages").click()
    row.locator(".saved:has-text('已保存')").wait_for()
    row.locator(".device-name").fill("县配发手机 017")
    row.locator(".register-device").click()
    page.wait_for_selector("#enrolment-code")
    code = page.inner_text("#enrolment-code").strip()
    # The same code as the field app's enrolment link, and that link as a QR code.
    link = page.get_attribute("#enrolment-link", "href")
    assert link == f"{BASE}/field/#enrol={code}", link
    page.wait_for_selector("#enrolment-qr path")
    modules = int(page.get_attribute("#enrolment-qr", "data-modules"))
    assert modules >= 25, modules  # version 2 or more (21 + 2 x 2 border modules at least)
    assert page.get_attribute("#enrolment-qr path", "d").count("M") > 100
    assert page.locator("#user-devices tr", has_text="县配发手机 017").count() == 1
    status, enrolled = api("POST", "/api/v1/devices/enrol", body={"enrolment_code": code, "app_version": "test"})
    assert status == 201, enrolled
    phone = Device.__new__(Device)
    phone.token, phone.seq = enrolled["access_token"], 1
    _, me = api("GET", "/api/v1/me", phone.token)
    assert me["scope"] == [other_village], me
    records, _ = phone.pull_all()
    people = [r for r in records.values() if r.get("entity") == "person"]
    assert people and all(r["org_unit"].startswith(other_village) for r in people)
    status, again = api("POST", "/api/v1/devices/enrol", body={"enrolment_code": code})
    assert status == 401, again
    _, users = api("GET", "/api/v1/users", admin)
    assert next(u for u in users if u["username"] == "enrol_w")["villages"] == [other_village]
