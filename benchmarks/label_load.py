"""Load test of the labelling server: 20 concurrent clients submit 2,000 annotations in total.

Starts `pixelforge label serve` in its own process on 127.0.0.1 over a 200-image shapes set, then
20 client threads each send 100 edits (labels, captions, boxes and accept/skip statuses, several
clients on the same images so edits collide). One request in ten is sent twice with the same
client_id, as a browser retrying after a lost answer would. Afterwards the annotations file must hold
exactly the 2,000 distinct edits — none lost, none duplicated — with versions 1..n per (key, field).
Prints p50/p95/p99 latency and throughput.

    .venv/bin/python benchmarks/label_load.py [--clients 20] [--annotations 2000] [--task review]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIXELFORGE = [sys.executable, "-m", "pixelforge.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--annotations", type=int, default=2000)
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    per_client = args.annotations // args.clients
    total = per_client * args.clients
    with tempfile.TemporaryDirectory(prefix="label-load-") as tmp:
        data = Path(tmp) / "shapes"
        subprocess.run(
            [*PIXELFORGE, "import", "shapes", "--n", str(args.images), "--size", "32", "--out", str(data)],
            check=True,
            capture_output=True,
        )
        port = free_port()
        db = Path(tmp) / "annotations.sqlite"
        server = subprocess.Popen(
            [*PIXELFORGE, "label", "serve", str(data), "--task", "review", "--port", str(port), "--db", str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    session = httpx.get(f"{url}/api/session", timeout=1).json()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}") from None
                    time.sleep(0.2)
            keys = httpx.get(f"{url}/api/queue?limit={args.images}").json()["keys"]
            classes = session["classes"]
            latencies: list[float] = []
            sent_ids: list[str] = []
            failures: list[str] = []
            lock = threading.Lock()

            def client(c: int) -> None:
                rng = random.Random(c)
                mine_lat, mine_ids = [], []
                with httpx.Client(base_url=url, timeout=30) as http:
                    for j in range(per_client):
                        key = keys[rng.randrange(len(keys) // 4)] if j % 3 == 0 else rng.choice(keys)  # hot images
                        field = rng.choice(["label", "caption", "boxes", "status"])
                        value = {
                            "label": rng.choice(classes),
                            "caption": f"client {c} edit {j}",
                            "boxes": [
                                {"x0": 1, "y0": 1, "x1": 2 + rng.randrange(20), "y1": 9, "label": rng.choice(classes)}
                            ],
                            "status": rng.choice(["accepted", "skipped"]),
                        }[field]
                        body = {
                            "key": key,
                            "field": field,
                            "value": value,
                            "annotator": f"client{c}",
                            "base_version": rng.randrange(3),
                            "client_id": f"c{c:02d}-{j:05d}-{os.getpid()}",
                        }
                        for attempt in range(2 if j % 10 == 0 else 1):  # every tenth request is retried
                            t0 = time.perf_counter()
                            r = http.post("/api/annotate", json=body)
                            mine_lat.append(time.perf_counter() - t0)
                            if r.status_code != 200:
                                with lock:
                                    failures.append(f"{r.status_code} {r.text[:200]}")
                            elif attempt == 1 and not r.json()["duplicate"]:
                                with lock:
                                    failures.append(f"retry of {body['client_id']} was stored again")
                        mine_ids.append(body["client_id"])
                with lock:
                    latencies.extend(mine_lat)
                    sent_ids.extend(mine_ids)

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(10)
        con = sqlite3.connect(db)
        stored = [r[0] for r in con.execute("SELECT client_id FROM edits")]
        versions_ok = all(sorted(v) == list(range(1, len(v) + 1)) for v in _versions(con).values())
        conflicts = con.execute("SELECT count(*) FROM edits WHERE conflict = 1").fetchone()[0]
        lost = set(sent_ids) - set(stored)
        duplicated = len(stored) - len(set(stored))
        lat = np.array(latencies) * 1000
        print(f"clients {args.clients}, annotations sent {total} (+{len(lat) - total} retries), stored {len(stored)}")
        print(
            f"lost {len(lost)}, duplicated {duplicated}, versions contiguous {versions_ok}, "
            f"conflicts recorded {conflicts}, request errors {len(failures)}"
        )
        print(
            f"latency ms: p50 {np.percentile(lat, 50):.1f}, p95 {np.percentile(lat, 95):.1f}, "
            f"p99 {np.percentile(lat, 99):.1f}, max {lat.max():.1f}; {len(lat) / wall:.0f} requests/s over "
            f"{wall:.1f} s"
        )
        ok = not lost and not duplicated and versions_ok and not failures and len(stored) == total
        if failures:
            print("first errors:", failures[:3])
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


def _versions(con: sqlite3.Connection) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for key, field, version in con.execute("SELECT key, field, version FROM edits"):
        out.setdefault((key, field), []).append(version)
    return out


if __name__ == "__main__":
    sys.exit(main())
