#!/usr/bin/env python3
"""Drives a PouchDB Server (CouchDB protocol) with the load harness's push/pull workload.

The peer of `benches/load.rs` (issue 17): the same preload (20,000 persons, one village of
5,000), the same push (40 devices x 250 ops, 60% creates of persons and visits, 35% updates of
persons, some in colliding pairs between two devices of a village, 5% deletes, 8 devices at a
time, one `_bulk_docs` request per device batch) and the same pulls (one village's 500 changes
through a `_changes` feed filtered on the village by a design document's filter function, as
PouchDB Server 4.2 has no `_selector` filter over HTTP; idle and while a second
round of pushes runs), over HTTP on 127.0.0.1. Writes one JSON file.

    bench/peer.py --url http://127.0.0.1:5984 --out results/peer.json [--villages N]

`bench/run --peer` installs PouchDB Server 4.2.0 into a temporary prefix, starts it and runs
this script; nothing of the peer is kept.
"""

import argparse
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
import uuid

PERSONS = 20_000
BIG_VILLAGE = "130131104201"
BIG_VILLAGE_PERSONS = 5_000
PUSH_DEVICES = 40
OPS_PER_DEVICE = 250
CLIENTS = 8
PULL_REPEATS = 10
PAGE = 500
DB = "fieldsync_peer"


class Client:
    """One keep-alive HTTP connection (one per thread)."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                headers = {"Content-Type": "application/json"} if data is not None else {}
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                if r.status >= 400:
                    raise RuntimeError(f"{method} {path}: HTTP {r.status}: {raw[:200]!r}")
                return json.loads(raw)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


_local = threading.local()


def client(url):
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = Client(url)
    return c


def parallel(n, threads, f):
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            f(i)

    ts = [threading.Thread(target=worker) for _ in range(max(1, threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def pct(v):
    v = sorted(v)
    if not v:
        return {"n": 0}

    def p(q):
        i = min(len(v), max(1, -(-int(len(v) * q * 1000) // 1000))) - 1
        return round(v[i] * 1000, 2)

    return {"n": len(v), "p50_ms": p(0.5), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0)}


def person(rng, village):
    male = rng.random() < 0.5
    return {
        "type": "person",
        "org_unit": village,
        "name": "张" + "".join(rng.choice("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚") for _ in range(2)),
        "sex": "male" if male else "female",
        "birth_date": f"{rng.randint(1950, 2015)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}",
        "id_number": f"130127{rng.randint(10**11, 10**12 - 1)}",
        "marital_status": "first_marriage",
        "residence": "resident",
        "phone": f"139{rng.randint(0, 10**8 - 1):08}",
    }


def pull(url, village, since):
    """Every page of the village's changes after `since`; returns (records, last_seq)."""
    c = client(url)
    n = 0
    while True:
        q = urllib.parse.urlencode(
            {"since": since, "limit": PAGE, "include_docs": "true", "filter": "app/village", "org_unit": village}
        )
        r = c.call("GET", f"/{DB}/_changes?{q}")
        n += len(r["results"])
        since = r["last_seq"]
        if len(r["results"]) < PAGE:
            return n, since


def replica(url, village):
    """The village's live documents: id -> (rev, type), as a device holds them after a pull."""
    c = client(url)
    out = {}
    since = 0
    while True:
        q = urllib.parse.urlencode(
            {"since": since, "limit": PAGE, "include_docs": "true", "filter": "app/village", "org_unit": village}
        )
        r = c.call("GET", f"/{DB}/_changes?{q}")
        for ch in r["results"]:
            if ch.get("deleted"):
                out.pop(ch["id"], None)
            else:
                out[ch["id"]] = (ch["doc"]["_rev"], ch["doc"].get("type"))
        since = r["last_seq"]
        if len(r["results"]) < PAGE:
            return out


def slot_of(doc_id, peers):
    h = 7
    for b in doc_id.encode():
        h = (h * 31 + b) & 0xFFFFFFFFFFFFFFFF
    return h % max(1, peers)


def plan(reps, villages_of, rng):
    """One batch per device, as `plan_batches` in benches/load.rs; returns (batches, pairs)."""
    n = len(reps)
    creates = OPS_PER_DEVICE * 60 // 100
    deletes = OPS_PER_DEVICE * 5 // 100
    updates = OPS_PER_DEVICE - creates - deletes
    batches = [[] for _ in range(n)]
    extra = [0] * n
    touched = set()
    pairs = 0
    for i in range(n):
        v = villages_of[i]
        peers = [j for j in range(n) if villages_of[j] == v]
        slot = peers.index(i)
        persons = [(d, rev) for d, (rev, t) in reps[i].items() if t == "person"]
        persons.sort()
        mine = [(d, rev) for d, rev in persons if slot_of(d, len(peers)) == slot and d not in touched]
        rng.shuffle(mine)
        ops = []
        for c in range(creates):
            did = str(uuid.UUID(int=rng.getrandbits(128)))
            if c % 2 == 0:
                ops.append(dict(person(rng, v), _id=did))
            else:
                pid = persons[rng.randrange(len(persons))][0]
                ops.append({"_id": did, "type": "visit", "org_unit": v, "person_id": pid,
                            "kind": "contraceptive", "visit_date": "2026-11-20", "findings": "情况正常"})
        n_pairs = round(updates * 0.05 * 0.75)
        partners = [p for p in peers if p > i]
        for u in range(max(0, updates - extra[i])):
            if not mine:
                break
            did, rev = mine.pop()
            touched.add(did)
            field = ["phone", "notes", "marital_status"][(u + i) % 3]
            doc = {"_id": did, "_rev": rev, "type": "person", "org_unit": v, field: f"7-{u}"}
            ops.append(doc)
            if u < n_pairs and partners:
                b = partners[u % len(partners)]
                if did in reps[b] and reps[b][did][0] == rev:
                    batches[b].append({"_id": did, "_rev": rev, "type": "person", "org_unit": v, field: f"8-{u}"})
                    extra[b] += 1
                    pairs += 1
        for _ in range(deletes):
            if not mine:
                break
            did, rev = mine.pop()
            touched.add(did)
            ops.append({"_id": did, "_rev": rev, "_deleted": True, "org_unit": v})
        batches[i] = batches[i] + ops
    return batches, pairs


def push_all(url, batches):
    lat, errors, conflicts = [], [], [0]
    lock = threading.Lock()
    t0 = time.perf_counter()

    def one(i):
        t = time.perf_counter()
        try:
            r = client(url).call("POST", f"/{DB}/_bulk_docs", {"docs": batches[i]})
            took = time.perf_counter() - t
            with lock:
                lat.append(took)
                conflicts[0] += sum(1 for x in r if x.get("error") == "conflict")
                errors.extend(x for x in r if x.get("error") not in (None, "conflict"))
        except Exception as e:  # noqa: BLE001 - reported in the output
            with lock:
                errors.append(str(e))

    parallel(len(batches), CLIENTS, one)
    return time.perf_counter() - t0, lat, errors, conflicts[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--villages", type=int, default=12)
    ap.add_argument("--version", default="pouchdb-server@4.2.0")
    a = ap.parse_args()
    rng = random.Random(7)
    t_all = time.perf_counter()
    c = client(a.url)
    try:
        c.call("DELETE", f"/{DB}")
    except RuntimeError:
        pass
    c.call("PUT", f"/{DB}")
    # PouchDB Server 4.2 has no `_selector` filter over HTTP: a design document's filter
    # function, the CouchDB 1.x way a device asks for its village's changes.
    c.call("PUT", f"/{DB}/_design/app", {"filters": {
        # express-pouchdb parses query values as JSON: the code arrives as a number.
        "village": "function (doc, req) { return String(doc.org_unit) === String(req.query.org_unit); }"}})
    villages = [f"130131102{k + 201:03}" for k in range(a.villages)]
    t = time.perf_counter()
    spread = PERSONS - BIG_VILLAGE_PERSONS
    docs = [dict(person(rng, villages[k % len(villages)]), _id=str(uuid.UUID(int=rng.getrandbits(128))))
            for k in range(spread)]
    docs += [dict(person(rng, BIG_VILLAGE), _id=str(uuid.UUID(int=rng.getrandbits(128))))
             for _ in range(BIG_VILLAGE_PERSONS)]
    for k in range(0, len(docs), 1000):
        c.call("POST", f"/{DB}/_bulk_docs", {"docs": docs[k:k + 1000]})
    preload_ms = round((time.perf_counter() - t) * 1000)
    del docs

    villages_of = [villages[i % len(villages)] for i in range(PUSH_DEVICES)]
    reps = [None] * PUSH_DEVICES
    cache = {}
    for i, v in enumerate(villages_of):
        if v not in cache:
            cache[v] = replica(a.url, v)
        reps[i] = dict(cache[v])
    batches, pairs = plan(reps, villages_of, rng)
    ops = sum(len(b) for b in batches)
    wall, lat, errors, conflicts = push_all(a.url, batches)
    push = {"devices": PUSH_DEVICES, "ops": ops, "clients": CLIENTS, "wall_ms": round(wall * 1000, 2),
            "ops_per_s": round(ops / wall), "batch_latency": pct(lat), "conflicting_pairs": pairs,
            "conflicts_answered": conflicts, "errors": len(errors), "first_errors": errors[:3]}
    print("[peer] push:", json.dumps(push), flush=True)

    # Pull of 500 village changes: a writer updates 500 persons of the big village.
    big = replica(a.url, BIG_VILLAGE)
    info = c.call("GET", f"/{DB}")
    since = info["update_seq"]
    targets = sorted((d, rev) for d, (rev, t) in big.items() if t == "person")[:500]
    c.call("POST", f"/{DB}/_bulk_docs", {"docs": [
        {"_id": d, "_rev": rev, "type": "person", "org_unit": BIG_VILLAGE, "notes": f"季度核查 {n}"}
        for n, (d, rev) in enumerate(targets)]})
    idle = []
    records = 0
    for _ in range(PULL_REPEATS):
        t = time.perf_counter()
        records, _ = pull(a.url, BIG_VILLAGE, since)
        idle.append(time.perf_counter() - t)
    # Under load: a second round of pushes from the same devices.
    reps = [None] * PUSH_DEVICES
    cache = {}
    for i, v in enumerate(villages_of):
        if v not in cache:
            cache[v] = replica(a.url, v)
        reps[i] = dict(cache[v])
    batches2, _ = plan(reps, villages_of, rng)
    loaded = []
    done = threading.Event()
    res = {}

    def pusher():
        res["r"] = push_all(a.url, batches2)
        done.set()

    th = threading.Thread(target=pusher)
    th.start()
    while not done.is_set():
        t = time.perf_counter()
        pull(a.url, BIG_VILLAGE, since)
        loaded.append(time.perf_counter() - t)
    th.join()
    w2 = res["r"][0]
    out = {
        "peer": a.version, "url_host": "127.0.0.1",
        "preload": {"persons": PERSONS, "big_village_persons": BIG_VILLAGE_PERSONS, "villages": len(villages),
                    "wall_ms": preload_ms},
        "push": push,
        "pull": {"village_records": records, "page_size": PAGE, "idle": pct(idle), "under_load": pct(loaded),
                 "load": f"{sum(len(b) for b in batches2)} ops pushed by {PUSH_DEVICES} devices, {CLIENTS} clients, "
                         f"during the pulls ({sum(len(b) for b in batches2) / w2:.0f} ops/s)"},
        "client": "bench/peer.py (Python, http.client, one keep-alive connection per thread)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_at_end": open("/proc/loadavg").read().strip(),
        "elapsed_s": round(time.perf_counter() - t_all),
    }
    print("[peer] pull:", json.dumps(out["pull"]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
