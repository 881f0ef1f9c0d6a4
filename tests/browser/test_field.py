"""The field app (/field/) and its client library in Chromium against the real server.

Two browser contexts are two phones of one village. The server's side of every promise is
checked through the supervisor API, each phone's through its IndexedDB (read by a second client
instance opened on it, i.e. what survives a closed tab).
"""

import urllib.parse
import datetime
import random

import pytest
from conftest import BASE, PASSWORD, PageErrors, api, login

VILLAGE = "130131100201"
WORKER = "w" + VILLAGE
SUPERVISOR = "township"
TIMEOUT = 30_000
# What a phone logs when a request finds no network (offline on purpose, or an answer cut off
# by the test): expected here, so not counted as errors of the app.
NETWORK_ERRORS = ("net::ERR_INTERNET_DISCONNECTED", "net::ERR_CONNECTION_RESET", "net::ERR_FAILED")


@pytest.fixture(scope="module")
def supervisor():
    return login(SUPERVISOR)


def server_record(token, entity, rid):
    status, body = api("GET", f"/api/v1/supervise/{entity}/{rid}", token)
    assert status == 200, (entity, rid, status, body)
    return body["record"]


def device_status(token, device_id):
    status, body = api("GET", "/api/v1/supervise/devices/status?limit=500", token)
    assert status == 200, body
    items = [d for d in body["items"] if d["device_id"] == device_id]
    assert len(items) == 1, device_id
    return items[0]


def resident_id(birth: datetime.date, female: bool) -> str:
    """A valid ID number of the demo county (ISO 7064 MOD 11-2 check character)."""
    seq = random.randrange(100, 999)
    if (seq % 2 == 1) == female:
        seq += 1 if seq < 998 else -1
    first17 = f"130131{birth:%Y%m%d}{seq:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(c) * w for c, w in zip(first17, weights))
    return first17 + "10X98765432"[total % 11]


def unique(name):
    return f"{name}{random.randrange(10_000, 99_999)}"


# ------------------------------------------------------------------ phones


class Phone:
    """One phone: a browser context (its own IndexedDB, service worker and network)."""

    def __init__(self, browser, name, service_workers="allow"):
        self.name = name
        self.context = browser.new_context(
            viewport={"width": 360, "height": 740},
            service_workers=service_workers,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        self.context.set_default_timeout(TIMEOUT)
        self.page = None
        self.errors = PageErrors()
        self.allowed = list(NETWORK_ERRORS)
        self.context.on("page", self.errors.watch)

    def open(self, hash_=""):
        self.page = self.context.new_page()
        self.page.goto(BASE + "/field/" + hash_)
        self.page.wait_for_selector("body[data-ready]")
        return self.page

    def close_page(self):
        self.page.close()
        self.page = None

    def offline(self, on):
        self.context.set_offline(on)

    def sign_in(self, username=WORKER):
        page = self.open()
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.fill("#device", f"测试手机 {self.name}")
        page.click("#login-submit")
        page.wait_for_selector("#sync-result[data-applied]", timeout=120_000)

    def go(self, hash_):
        self.page.evaluate("h => { location.hash = h; }", hash_)

    def sync(self):
        self.page.click("#sync")
        self.page.wait_for_selector("#sync-result", timeout=120_000)
        return self.page.eval_on_selector("#sync-result", "e => ({...e.dataset})")

    def save(self):
        before = self.page.evaluate("location.hash")
        self.page.click("#save")
        self.page.wait_for_function("h => location.hash !== h", arg=before)

    def new_person(self, name, birth, female=True, id_number=None, household=None):
        self.go("#new/person" + (f"?household_id={household}" if household else ""))
        self.page.wait_for_selector("#record-form[data-entity=person]")
        self.page.fill("#f-name", name)
        self.page.select_option("#f-sex", "female" if female else "male")
        self.page.fill("#f-birth_date", birth.isoformat())
        if id_number:
            self.page.fill("#f-id_number", id_number)
        self.page.select_option("#f-marital_status", "first_marriage")
        self.save()
        return self.page.evaluate("location.hash").split("/")[1]

    def new_household(self, number, head):
        self.go("#new/household")
        self.page.wait_for_selector("#record-form[data-entity=household]")
        self.page.fill("#f-household_no", number)
        self.page.fill("#f-head_name", head)
        self.page.fill("#f-address", f"东庄{number}号")
        self.save()
        return self.page.evaluate("location.hash").split("/")[1]

    def new_child(self, entity, person_id, selects=None, fills=None):
        key = "mother_id" if entity == "birth" else "person_id"
        self.go(f"#new/{entity}?{key}={person_id}")
        self.page.wait_for_selector(f"#record-form[data-entity={entity}]")
        for k, v in (selects or {}).items():
            self.page.select_option(f"#f-{k}", v)
        for k, v in (fills or {}).items():
            self.page.fill(f"#f-{k}", v)
        self.save()

    def edit(self, entity, rid, selects=None, fills=None):
        self.go(f"#edit/{entity}/{rid}")
        self.page.wait_for_selector(f"#record-form[data-entity={entity}]")
        for k, v in (selects or {}).items():
            self.page.select_option(f"#f-{k}", v)
        for k, v in (fills or {}).items():
            self.page.fill(f"#f-{k}", v)
        self.save()

    def durable(self):
        """The phone's state as stored (a second client opened on its IndexedDB)."""
        return self.page.evaluate(
            """async () => {
              const m = await import('/client/index.js');
              const c = await m.openClient();
              const view = {};
              for (const r of c.view().values()) view[r.id] = {entity: r.entity, version: r.version, fields: r.fields, pending: r.pending};
              return {view, ops: c.state.ops, meta: {device_id: c.state.meta.auth && c.state.meta.auth.device_id,
                      snapshot_last_seq: c.state.meta.snapshot_last_seq}, unacked: c.unacked().length};
            }"""
        )

    def fresh_snapshot(self):
        """A pull of the phone's whole scope from cursor 0, with the phone's own token."""
        return self.page.evaluate(
            """async () => {
              const m = await import('/client/index.js');
              const c = await m.openClient();
              const token = c.state.meta.auth.access_token;
              const snap = {};
              let cursor = 0;
              for (;;) {
                const res = await fetch('/api/v1/sync/pull', {method: 'POST',
                  headers: {'Content-Type': 'application/json', Authorization: 'Bearer ' + token},
                  body: JSON.stringify({cursor})});
                const b = await res.json();
                for (const r of b.records) {
                  if (r.deleted) delete snap[r.id];
                  else snap[r.id] = {entity: r.entity, version: r.version, fields: r.fields, pending: false};
                }
                cursor = b.next_cursor;
                if (!b.has_more) break;
              }
              return snap;
            }"""
        )

    def assert_converged(self):
        state = self.durable()
        assert state["unacked"] == 0, f"{self.name}: unsent ops"
        snap = self.fresh_snapshot()
        view = state["view"]
        assert set(view) == set(snap), f"{self.name}: ids differ: {set(view) ^ set(snap)}"
        for rid, rec in snap.items():
            assert view[rid] == rec, (self.name, rid, view[rid], rec)
        self.errors.check(allow=self.allowed)
        return state


def assert_each_op_once(supervisor, phone):
    """Every op of the phone is on the server once: its last_seq is the log's, nothing was
    rejected, every created record exists at the version its own ops give it."""
    state = phone.durable()
    ops = state["ops"]
    status = device_status(supervisor, state["meta"]["device_id"])
    assert status["last_seq"] == len(ops) == ops[-1]["seq"], (status, len(ops))
    assert status["rejected_ops"] == 0
    for op in ops:
        result = op["result"]
        assert result["status"] in ("applied", "duplicate", "redirected"), result
    return ops


@pytest.fixture
def phones(browser):
    made = []

    def make(name, **kw):
        p = Phone(browser, name, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.errors.check(allow=p.allowed)
        p.context.close()


# ------------------------------------------------------------------ the tests


def test_two_phones_offline_closed_mid_push_exactly_once(supervisor, phones):
    # Routes see the app's requests only without a service worker in between.
    a, b = phones("A", service_workers="block"), phones("B", service_workers="block")
    a.sign_in()
    b.sign_in()
    a.offline(True)
    b.offline(True)
    birth = datetime.date(1992, 3, 4)
    a_people = [a.new_person(unique("甲"), birth, id_number=resident_id(birth, True)) for _ in range(3)]
    for pid in a_people:
        a.new_child("visit", pid, selects={"kind": "iud_check"})
    hh = b.new_household(unique("9"), unique("乙户主"))
    b_people = [b.new_person(unique("乙"), birth, household=hh) for _ in range(2)]
    b.new_child("measure", b_people[0], selects={"method": "iud_insertion"})

    # A comes online and syncs; the server applies the batch but the answer never reaches the
    # phone, and the tab is closed in that moment.
    a.offline(False)
    lost = []

    def lose_answer(route):
        route.fetch()
        lost.append(True)
        route.abort("connectionreset")

    a.page.route("**/api/v1/sync/push", lose_answer)
    a.page.click("#sync")
    a.page.wait_for_function("() => document.querySelector('#sync-result[data-error]')")
    assert lost
    a.close_page()

    a.open()
    assert a.page.get_attribute("#pending", "data-count") == "6"
    b.offline(False)
    summary = a.sync()
    assert summary["rejected"] == "0"
    b.sync()
    a.sync()

    for phone in (a, b):
        assert_each_op_once(supervisor, phone)
        phone.assert_converged()
    for pid in a_people:
        rec = server_record(supervisor, "person", pid)
        assert rec["version"] == 1, rec
    # Each phone holds the other's records.
    assert set(a_people) | set(b_people) <= set(b.durable()["view"])
    assert set(a_people) | set(b_people) <= set(a.durable()["view"])


def test_same_field_conflict_resolved_by_supervisor_reaches_both_phones(supervisor, phones):
    a, b = phones("A"), phones("B")
    a.sign_in()
    b.sign_in()
    birth = datetime.date(1990, 6, 1)
    pid = a.new_person(unique("丙"), birth)
    a.sync()
    b.sync()
    a.offline(True)
    b.offline(True)
    a.edit("person", pid, selects={"marital_status": "divorced"})
    b.edit("person", pid, selects={"marital_status": "widowed"})
    a.offline(False)
    b.offline(False)
    a.sync()
    summary = b.sync()
    assert summary["review"] == "1", summary

    status, page = api("GET", f"/api/v1/supervise/conflicts?status=open&village={VILLAGE}&entity=person&limit=500", supervisor)
    assert status == 200, page
    mine = [c for c in page["items"] if c["record_id"] == pid]
    assert len(mine) == 1 and mine[0]["field"] == "marital_status", mine
    # The phone shows the conflict it met, as open.
    b.go("#conflicts")
    assert b.page.get_attribute(f"#conflict-list li[data-id='{mine[0]['id']}']", "data-status") == "open"
    status, body = api(
        "POST", f"/api/v1/supervise/conflicts/{mine[0]['id']}/resolve", supervisor,
        {"take": "value", "value": "remarried", "reason": "入户核实为再婚"},
    )
    assert status == 200, body

    for phone in (a, b):
        phone.sync()
        phone.go(f"#person/{pid}")
        phone.page.wait_for_selector("dd[data-field=marital_status]")
        assert phone.page.inner_text("dd[data-field=marital_status]") == "再婚"
        phone.go("#conflicts")
        assert phone.page.get_attribute(f"#conflict-list li[data-id='{mine[0]['id']}']", "data-status") == "resolved"
        phone.assert_converged()


def test_same_person_registered_twice_ends_as_one_with_children_repointed(supervisor, phones):
    a, b = phones("A"), phones("B")
    a.sign_in()
    b.sign_in()
    a.offline(True)
    b.offline(True)
    birth = datetime.date(1995, 2, 3)
    idn = resident_id(birth, True)
    name = unique("丁")
    pa = a.new_person(name, birth, id_number=idn)
    a.new_child("visit", pa, selects={"kind": "pregnancy_check"})
    pb = b.new_person(name, birth, id_number=idn)
    b.new_child("measure", pb, selects={"method": "iud_insertion"})
    assert pa != pb
    a.offline(False)
    b.offline(False)
    a.sync()
    b.sync()
    a.sync()
    b.sync()

    status, page = api("GET", f"/api/v1/supervise/person?village={VILLAGE}&id_number={idn}", supervisor)
    assert status == 200 and page["total"] == 1, page
    survivor = page["items"][0]["id"]
    assert survivor in (pa, pb)
    for phone in (a, b):
        state = phone.assert_converged()
        view = state["view"]
        same = [r for r in view.values() if r["entity"] == "person" and r["fields"].get("id_number") == idn]
        assert len(same) == 1 and same[0] is not None
        children = [r for r in view.values() if r["fields"].get("person_id") in (pa, pb)]
        assert {r["entity"] for r in children} == {"visit", "measure"}, children
        assert all(r["fields"]["person_id"] == survivor for r in children), children


def test_reload_with_the_network_off_shows_the_data(phones):
    a = phones("A")
    a.sign_in()
    a.page.evaluate("navigator.serviceWorker.ready")
    a.page.reload()
    a.page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    a.offline(True)
    a.page.reload()
    a.page.wait_for_selector("body[data-ready]")
    a.go("#persons")
    a.page.wait_for_selector("#person-list li")
    assert a.page.inner_text("#net") == "离线"
    assert len(a.page.query_selector_all("#person-list li")) > 10
    # Installable: the manifest (served by the worker offline too) names the app and its icons.
    manifest = a.page.evaluate("fetch('/field/manifest.webmanifest').then((r) => r.json())")
    assert manifest["start_url"] == "/field/" and manifest["display"] == "standalone"
    assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}


def test_a_village_officers_day(supervisor, phones):
    a = phones("A")
    a.sign_in()
    a.page.evaluate("navigator.serviceWorker.ready")
    a.page.reload()
    a.page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    a.offline(True)
    # 30 records offline: 2 households, 8 persons, 8 visits, 6 measures, 4 supplies, 2 pregnancies.
    birth = datetime.date(1993, 8, 9)
    households = [a.new_household(unique("8"), unique("户主")) for _ in range(2)]
    people = [a.new_person(unique("戊"), birth, id_number=resident_id(birth, True), household=households[i % 2]) for i in range(8)]
    for pid in people:
        a.new_child("visit", pid, selects={"kind": "iud_check"})
    for pid in people[:6]:
        a.new_child("measure", pid, selects={"method": "iud_insertion"})
    for pid in people[:4]:
        a.new_child("supply", pid, selects={"item": "condoms"}, fills={"quantity": "10"})
    for pid in people[:2]:
        a.new_child("pregnancy", pid, fills={"expected_date": "2027-05-01"})
    a.go("#today")
    a.page.wait_for_selector("#today-list")
    assert len(a.page.query_selector_all("#today-list li")) == 30
    # Nothing wider than a 360 px phone: no sideways scrolling on a list, a record or a form.
    for screen, ready in ((f"#person/{people[0]}", "#related"), ("#new/pregnancy", "#record-form"), ("#today", "#today-list")):
        a.go(screen)
        a.page.wait_for_selector(ready)
        assert a.page.evaluate("document.documentElement.scrollWidth") <= 360, screen

    # The tab is closed and the phone put away; reopened later, still offline.
    a.close_page()
    a.open("#today")
    a.page.wait_for_selector("#today-list")
    assert len(a.page.query_selector_all("#today-list li")) == 30
    assert a.page.get_attribute("#pending", "data-count") == "30"

    a.offline(False)
    summary = a.sync()
    assert summary["applied"] == "30" and summary["rejected"] == "0", summary
    ops = assert_each_op_once(supervisor, a)
    assert len(ops) == 30
    for op in ops:
        rec = server_record(supervisor, op["entity"], op["id"])
        assert rec["version"] == 1
    a.assert_converged()


def test_sign_out_pushes_first_or_warns_then_wipes(supervisor, phones):
    a = phones("A")
    a.sign_in()
    a.offline(True)
    birth = datetime.date(1991, 1, 2)
    pid = a.new_person(unique("己"), birth)
    a.go("#me")
    a.page.once("dialog", lambda d: d.dismiss())
    a.page.click("#signout")
    a.page.wait_for_selector("text=已取消退出")
    assert a.durable()["unacked"] == 1

    a.offline(False)
    a.go("#me")
    a.page.click("#signout")
    a.page.wait_for_selector("#login")
    assert server_record(supervisor, "person", pid)["version"] == 1
    state = a.durable()
    assert state["ops"] == [] and state["view"] == {}


def test_revoked_phone_tells_the_worker_then_wipes(supervisor, phones):
    a = phones("A")
    a.allowed.append("status of 403")
    a.sign_in()
    a.offline(True)
    a.new_person(unique("庚"), datetime.date(1990, 2, 3))
    a.offline(False)
    device = a.durable()["meta"]["device_id"]
    status, body = api("POST", f"/api/v1/devices/{device}/revoke", login("admin"))
    assert status == 200, body
    a.page.click("#sync")
    a.page.wait_for_selector("#revoked")
    assert "1 条记录未能上传" in a.page.inner_text("#revoked")
    assert a.durable()["unacked"] == 1, "nothing is wiped before the worker was told"
    a.page.click("#revoked-ok")
    a.page.wait_for_selector("#login")
    state = a.durable()
    assert state["ops"] == [] and state["view"] == {}


def test_villages_reassigned_rejected_op_shown_and_fresh_snapshot(phones):
    # Another village's worker, so the other tests' scope is untouched.
    worker, old, new = "w130131100202", "130131100202", "130131100203"
    admin = login("admin")
    status, body = api("POST", "/api/v1/auth/login", body={"username": worker, "password": PASSWORD})
    assert status == 200, body
    user_id = body["user"]["id"]
    c = phones("C")
    c.sign_in(worker)
    c.offline(True)
    c.new_person(unique("辛"), datetime.date(1988, 8, 8))
    status, body = api("PUT", f"/api/v1/users/{user_id}/villages", admin, {"villages": [new]})
    assert status == 200, body
    try:
        c.offline(False)
        summary = c.sync()
        assert summary["rejected"] == "1", summary
        assert "不属于本人负责的村" in c.page.inner_text("#sync-status")
        c.assert_converged()
        view = c.page.evaluate(
            """async () => {
              const m = await import('/client/index.js');
              const c = await m.openClient();
              return {scope: c.state.meta.scope, units: [...c.view().values()].map((r) => r.org_unit)};
            }"""
        )
        assert view["scope"] == [new]
        assert view["units"] and all(u.startswith(new) for u in view["units"]), set(view["units"])
        assert c.page.inner_text("#village").endswith(new)
    finally:
        status, body = api("PUT", f"/api/v1/users/{user_id}/villages", admin, {"villages": [old]})
        assert status == 200, body


def test_expired_access_token_is_refreshed_during_sync(phones):
    a = phones("A")
    a.allowed.append("status of 401")
    a.sign_in()
    a.offline(True)
    pid = a.new_person(unique("壬"), datetime.date(1989, 9, 9))
    a.close_page()
    # While the app is closed, its access token goes bad (as after 15 minutes).
    page = a.context.new_page()
    page.goto(BASE + "/field/manifest.webmanifest")
    before = page.evaluate(
        """async () => {
          const m = await import('/client/index.js');
          const c = await m.openClient();
          const auth = c.state.meta.auth;
          await c.commit({meta: {auth: {...auth, access_token: 'expired'}}});
          return auth.refresh_token;
        }"""
    )
    page.close()
    a.offline(False)
    a.open()
    summary = a.sync()
    assert summary["applied"] == "1", summary
    auth = a.page.evaluate(
        "async () => (await (await import('/client/index.js')).openClient()).state.meta.auth"
    )
    assert auth["access_token"] != "expired"
    assert auth["refresh_token"] != before, "the rotated refresh token was stored"
    assert pid in a.durable()["view"]


def test_phone_enrols_with_an_admins_code_without_a_password(phones):
    """An admin registers a phone for a new worker; the phone enrols on the sign-in screen with
    the one-time code (no password typed), is bound to that device, and downloads the worker's
    village. A wrong code is refused with a message; the right one comes by the enrolment link
    (the console's QR code), filled in and taken out of the address; a used code does not work
    twice."""
    admin = login("admin")
    username = unique("enrol_f")
    status, worker = api(
        "POST",
        "/api/v1/users",
        admin,
        {"username": username, "display_name": "登记码专干", "password": "a long enough password", "role": "worker", "villages": [VILLAGE]},
    )
    assert status == 201, worker
    status, enrolment = api("POST", f"/api/v1/users/{worker['id']}/devices", admin, {"name": "县配发手机"})
    assert status == 201, enrolment
    code = enrolment["enrolment_code"]

    phone = phones("enrolled")
    phone.allowed.append("401")
    page = phone.open()
    # Nobody is signed in: no tabs and no sync button yet.
    assert not page.locator("#tabs").is_visible()
    assert not page.locator("#sync").is_visible()
    page.fill("#enrolment-code", "not-a-code")
    page.click("#enrol-submit")
    page.wait_for_selector("#enrol-msg .err")
    assert "登记码错误" in page.inner_text("#enrol-msg")
    # The right code arrives by the enrolment link the console shows as a QR code: the app
    # fills it in and takes it out of the address.
    phone.close_page()
    page = phone.open("#enrol=" + urllib.parse.quote(code, safe=""))
    assert page.input_value("#enrolment-code") == code
    assert "enrol=" not in page.url and code not in page.url, page.url
    assert page.locator("#enrol-linked").is_visible()
    page.click("#enrol-submit")
    page.wait_for_selector("#sync-result[data-applied]", timeout=120_000)
    state = phone.durable()
    assert state["meta"]["device_id"] == enrolment["device"]["id"]
    people = [r for r in state["view"].values() if r["entity"] == "person"]
    assert people, "the village's persons reached the enrolled phone"
    phone.assert_converged()
    status, again = api("POST", "/api/v1/devices/enrol", body={"enrolment_code": code})
    assert status == 401, again
