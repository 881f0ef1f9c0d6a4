"""The served pages load in Chromium under their Content-Security-Policy without errors."""

from conftest import BASE


def test_console_and_field_app_load(context, errors):
    page = context.new_page()
    csp = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp.append(m.text))
    r = page.goto(BASE + "/")
    assert r.status == 200
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    page.wait_for_load_state("networkidle")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    r = page.goto(BASE + "/field/")
    assert r.status == 200
    page.wait_for_load_state("networkidle")
    assert not csp, csp
