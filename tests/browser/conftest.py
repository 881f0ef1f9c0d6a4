"""Shared fixtures of the browser tests: the demo server started by tests/browser/main.rs, and
Debian's Chromium driven by Playwright (never a browser Playwright downloads itself).

Every page a test opens fails the test on a console error or a Content-Security-Policy
violation."""

import json
import os
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

BASE = os.environ["FIELDSYNC_BASE_URL"]
PASSWORD = os.environ["FIELDSYNC_DEMO_PASSWORD"]
CHROMIUM = os.environ.get("FIELDSYNC_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("FIELDSYNC_TEST_ARTIFACTS")  # screenshots go here when set

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageErrors:
    """Console errors, uncaught exceptions and CSP violations seen by the pages of a context."""

    def __init__(self):
        self.errors = []

    def watch(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        return page

    def check(self, allow=()):
        bad = [e for e in self.errors if not any(a in e for a in allow)]
        assert not bad, "errors in the browser:\n" + "\n".join(bad)


@pytest.fixture
def errors():
    e = PageErrors()
    yield e
    e.check()


@pytest.fixture
def context(browser, errors):
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    ctx.on("page", errors.watch)
    yield ctx
    ctx.close()


def api(method, path, token=None, body=None):
    """A direct API call (for arranging data and checking what the pages show)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw and r.headers.get_content_type().endswith("json") else raw)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def login(username, password=PASSWORD):
    status, body = api("POST", "/api/v1/auth/login", body={"username": username, "password": password})
    assert status == 200, body
    return body["access_token"]


def screenshot(page, name):
    if ARTIFACTS:
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, name), full_page=False)
