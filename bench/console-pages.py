#!/usr/bin/env python3
"""Times every console page on the demo county in Chromium (Debian's, driven by Playwright):
a release `fieldsync serve --demo` on a fresh database, each page opened N times from the
navigation as a township and as a county supervisor. A page's time runs from the click on its
navigation link to the marker the browser tests wait for (`#page[data-ready=<page>]`: its data
drawn); the overview's trend charts (twelve monthly reports, drawn after the figures) are timed
separately to `#page[data-trends=drawn]`. The API calls behind each page are timed from the
browser's own resource timing. Nothing is asserted: the figures go to
results/console-pages-<backend>.json, which `bench/run --render` shows in BENCHMARKS.md.

    cargo build --release
    bench/console-pages.py                       # SQLite in a temp dir, 15 loads per page
    bench/console-pages.py --runs 30
    bench/console-pages.py --pg-url postgres://postgres@127.0.0.1:5432/postgres   # a new database

A database made elsewhere (the load harness's 300,000-person county, kept with `--keep`) is
served as it is with `--database-url URL --tag NAME`: no demo is loaded, the accounts
`township` and `county` must exist with the password in FIELDSYNC_BENCH_PASSWORD, and the
figures go to results/console-pages-<backend>-<NAME>.json:

    cargo bench --bench load -- --backend postgres --only report --keep
    fieldsync --database-url URL user add --username county --role county_supervisor --org-unit 130131 --password-stdin
    fieldsync --database-url URL user add --username township --role township_supervisor --org-unit 130131104 --password-stdin
    FIELDSYNC_BENCH_PASSWORD=... bench/console-pages.py --database-url URL --tag 300k
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["overview", "report", "conflicts", "duplicates", "quality", "ledgers", "devices", "targets"]
TARGET_MS = 300


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 1)


def start_server(binary, url, demo_load=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSYNC_")}
    workdir = tempfile.mkdtemp(prefix="fs-console-bench-")
    proc = subprocess.Popen(
        [binary, "--database-url", url, "serve", "--bind", "127.0.0.1:0"] + (["--demo"] if demo_load else []),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=workdir,
    )
    base = password = None
    demo = ""
    deadline = time.time() + 600
    while base is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("serve --demo ended before listening")
        if line.startswith("demo county"):
            demo = line.strip()
        if line.startswith("admin password (shown once): "):
            password = line.split(": ", 1)[1].strip()
        if line.startswith("fieldsync listening on "):
            base = line.split("on ", 1)[1].strip()
    # keep draining stdout so the server never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, base, password, demo


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure(browser, base, password, username, runs):
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(base + "/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_selector('#page[data-ready="overview"]', timeout=120000)
    page.wait_for_selector('#page[data-trends="drawn"]', timeout=120000)
    out = {}
    for name in PAGES:
        wall, inner, trends, api = [], [], [], {}
        # one warm-up load (first import of the ECharts module, the database's caches)
        for i in range(runs + 1):
            # from another page each time (a link to the page already open does nothing)
            other = "devices" if name == "targets" else "targets"
            page.click(f"#nav-{other}")
            page.wait_for_selector(f'#page[data-ready="{other}"]', timeout=60000)
            page.evaluate("performance.clearResourceTimings(); document.getElementById('page').removeAttribute('data-ready'); document.getElementById('page').removeAttribute('data-trends')")
            started = time.perf_counter()
            page.click(f"#nav-{name}")
            page.wait_for_selector(f'#page[data-ready="{name}"]', timeout=60000)
            ms = (time.perf_counter() - started) * 1000
            trend_ms = None
            if name == "overview":
                page.wait_for_selector('#page[data-trends="drawn"]', timeout=120000)
                trend_ms = (time.perf_counter() - started) * 1000
            calls = page.evaluate(
                """() => performance.getEntriesByType('resource')
                     .filter(e => e.name.includes('/api/'))
                     .map(e => [new URL(e.name).pathname, e.duration])"""
            )
            if i == 0:
                continue
            wall.append(ms)
            inner.append(int(page.get_attribute("#page", "data-ms")))
            if trend_ms is not None:
                trends.append(trend_ms)
            for path, d in calls:
                api.setdefault(path, []).append(d)
        out[name] = {
            "runs": runs,
            "median_ms": percentile(wall, 50),
            "p95_ms": percentile(wall, 95),
            "max_ms": round(max(wall), 1),
            "in_page_median_ms": percentile(inner, 50),
            "in_page_p95_ms": percentile(inner, 95),
            "api_median_ms": {p: percentile(v, 50) for p, v in sorted(api.items())},
            "api_calls_per_load": round(sum(len(v) for v in api.values()) / runs, 1),
        }
        if trends:
            out[name]["trends_median_ms"] = percentile(trends, 50)
            out[name]["trends_p95_ms"] = percentile(trends, 95)
        print(f"{username:>8} {name:<11} median {out[name]['median_ms']:>7} ms  p95 {out[name]['p95_ms']:>7} ms"
              f"  in page {out[name]['in_page_median_ms']:>5} / {out[name]['in_page_p95_ms']:>5} ms", flush=True)
    ctx.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="loads per page (after one warm-up)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/fieldsync"))
    ap.add_argument("--pg-url", help="PostgreSQL admin URL: a new database is made and dropped")
    ap.add_argument("--database-url", help="serve this database as it is (no demo load); needs --tag")
    ap.add_argument("--tag", help="suffix of the results file for --database-url (e.g. 300k)")
    ap.add_argument("--chromium", default=os.environ.get("FIELDSYNC_TEST_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results"))
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} missing: cargo build --release")
    pg = None
    if args.database_url:
        if not args.tag or not os.environ.get("FIELDSYNC_BENCH_PASSWORD"):
            raise SystemExit("--database-url needs --tag and FIELDSYNC_BENCH_PASSWORD")
        url = args.database_url
        backend = "postgres" if url.startswith("postgres") else "sqlite"
    elif args.pg_url:
        name = f"fs_console_bench_{uuid.uuid4().hex[:12]}"
        subprocess.run(["psql", args.pg_url, "-qc", f"CREATE DATABASE {name}"], check=True)
        url = args.pg_url.rsplit("/", 1)[0] + "/" + name
        pg, backend = name, "postgres"
    else:
        url = "sqlite://" + os.path.join(tempfile.mkdtemp(prefix="fs-console-bench-"), "fieldsync.db")
        backend = "sqlite"
    load_start = loadavg()
    proc, base, password, demo = start_server(args.binary, url, demo_load=not args.database_url)
    if args.database_url:
        password = os.environ["FIELDSYNC_BENCH_PASSWORD"]
        demo = f"existing database ({args.tag}), served as it is"
    started = time.time()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            roles = {
                "township": measure(browser, base, password, "township", args.runs),
                "county": measure(browser, base, password, "county", args.runs),
            }
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
        if pg:
            subprocess.run(["psql", args.pg_url, "-qc", f"DROP DATABASE IF EXISTS {pg} WITH (FORCE)"])
    cmd = "bench/console-pages.py" + (f" --runs {args.runs}" if args.runs != 15 else "") + (" --pg-url URL" if pg else "")
    if args.database_url:
        cmd += f" --database-url URL --tag {args.tag}"
    if "/release/" not in args.binary:
        cmd += f" --binary {os.path.relpath(args.binary, ROOT)}"
    result = {
        "command": cmd,
        "backend": backend,
        "build": "release" if "/release/" in args.binary else ("debug" if "/debug/" in args.binary else args.binary),
        "target_ms": TARGET_MS,
        "demo": demo,
        "measured": "click on the page's navigation link to #page[data-ready=<page>] (its data drawn), "
        "Chromium headless at 1280x900, server and browser on the same machine",
        "machine": {
            "cpu": cpu(),
            "cores": os.cpu_count(),
            "date": datetime.date.today().isoformat(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": loadavg(),
        },
        "elapsed_s": round(time.time() - started),
        "roles": roles,
    }
    os.makedirs(args.out, exist_ok=True)
    suffix = f"-{args.tag}" if args.database_url else ""
    path = os.path.join(args.out, f"console-pages-{backend}{suffix}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
