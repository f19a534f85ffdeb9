"""Organise: clustering quality, outlier detection against cleanlab's Datalab, similar-image search.

    .venv/bin/python benchmarks/organise.py [--minutes 2] [--vectors 1000000]

1. Digits (scikit-learn, 1,797 images) embedded by a classifier that `pixelforge train classifier`
   trained on them (--minutes), and by the pixels model: `pixelforge cluster --k 10` and
   `--k auto`, NMI of the clusters against the true digits; and by the FID Inception network when its
   weights are here ($PIXELFORGE_INCEPTION_WEIGHTS or the torch hub cache), else skipped with the reason.
2. Planted outliers: 2% shapes images (36) mixed into the digits, embedded by the same classifier:
   ROC AUC of the outlier score of `cluster` (isolation forest, and LOF) and of cleanlab's
   OutOfDistribution score on the same vectors (what Datalab's outlier issue computes from features;
   Datalab itself needs the `datasets` package, which pixelforge does not install).
3. Search: 500 shapes images and a near copy of each (JPEG quality 40, brightness +8%), pixels
   embedding: recall@10 of the copy when the original is the query. Speed: --vectors random unit
   vectors of 128 dimensions in the IVF index `similar` uses from 1,000,000 vectors on: build time
   and the mean time of a single query (200 queries), beside an exact search.
4. The map in Chromium (headless, Playwright): --map-samples shapes images embedded by pixels and
   clustered (UMAP map when umap-learn is installed): the HTML report of the clustered dataset, from
   navigation to its load event (every inline image decoded), and `label serve`'s map at /#!map, from
   navigation to the scatter drawn (the 10,000 points fetched from /api/map and painted); best of 3.

Measured 2026-12-07 (2 cores, alone, 4 min 49 s): NMI classifier 1.000 (k 10 and auto), pixels
0.742 / 0.755, inception skipped (no weights here); outlier AUC isolation forest 0.993, LOF 0.860,
cleanlab OutOfDistribution 0.953; recall@10 1.000; 1M x 128: 0.17 ms per IVF query (built in
24.5 s), 55.4 ms exact; map of 10,000: report 0.07 s, app 0.25 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pixelforge import neighbours  # noqa: E402
from pixelforge.cli import main as cli  # noqa: E402
from pixelforge.organise.cluster import outlier_scores  # noqa: E402
from pixelforge.store import Dataset  # noqa: E402


def run(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the commands' results: the benchmark prints its own
        code = cli(list(args))
    if code:
        raise SystemExit(f"pixelforge {' '.join(args)} failed with exit {code}")


def vectors(path: str, name: str | None = None) -> tuple[list[str], np.ndarray]:
    emb = Dataset.open(path).embeddings(name)
    return emb.keys, emb.normalised()


def clustering(work: Path, minutes: float) -> Path:
    from sklearn.metrics import normalized_mutual_info_score

    digits, model = work / "digits", work / "judge"
    run("import", "digits", "--size", "16", "--out", str(digits))
    args = ["--data", str(digits), "--out", str(model), "--image-size", "16", "--max-minutes", str(minutes)]
    run("train", "classifier", *args, "--device", "cpu")
    run("embed", str(digits), "--out", str(work / "emb"), "--model", f"classifier:{model}", "--device", "cpu")
    run("embed", str(work / "emb"), "--out", str(work / "emb2"), "--model", "pixels")
    names, source = ["classifier", "pixels"], work / "emb2"
    print("\n1. clustering the digits (NMI against the true digit)")
    try:  # the real FID Inception weights, when the user has them (nothing is ever downloaded here)
        from pixelforge.evaluate.inception import find_weights

        weights = find_weights()
        run("embed", str(source), "--out", str(work / "emb3"), "--model", f"inception:{weights}")
        names, source = [*names, "inception"], work / "emb3"
    except Exception as exc:  # UsageError without the file; ImportError without the eval extra
        print(f"   inception: skipped ({str(exc).splitlines()[0][:160]})")
    for name in names:
        for k in ("10", "auto"):
            out = work / f"cl-{name}-{k}"
            run("cluster", str(source), "--out", str(out), "--k", k, "--embedding", name, "--processes", "1")
            table = Dataset.open(str(out)).index(columns=["label", "cluster"])
            labels, clusters = (table.column(c).to_pylist() for c in ("label", "cluster"))
            nmi = normalized_mutual_info_score(labels, clusters)
            print(f"   {name:10s} --k {k:4s}: {len(set(clusters)):2d} clusters, NMI {nmi:.3f}")
    return model


def outliers(work: Path, model: Path) -> None:
    from sklearn.metrics import roc_auc_score

    shapes = work / "shapes"
    run("import", "shapes", "--n", "36", "--size", "16", "--seed", "5", "--out", str(shapes))
    run("embed", str(shapes), "--out", str(work / "shapes-emb"), "--model", f"classifier:{model}", "--device", "cpu")
    _, d = vectors(str(work / "emb"), "classifier")
    _, s = vectors(str(work / "shapes-emb"), "classifier")
    x = np.concatenate([d, s])
    planted = np.r_[np.zeros(len(d)), np.ones(len(s))]
    print(f"\n2. planted outliers: {len(s)} shapes among {len(d)} digits ({len(s) / len(x):.1%}), ROC AUC")
    for method in ("lof", "iforest"):
        start = time.perf_counter()
        score = outlier_scores(x, 10, method, seed=0)
        print(
            f"   pixelforge cluster --outlier-method {method:8s} AUC {roc_auc_score(planted, score):.3f} "
            f"({time.perf_counter() - start:.2f} s)"
        )
    from cleanlab.outlier import OutOfDistribution  # what Datalab's outlier issue scores features with

    start = time.perf_counter()
    score = 1.0 - OutOfDistribution().fit_score(features=x)  # cleanlab: a low score is an outlier
    print(
        f"   cleanlab OutOfDistribution (Datalab's outlier score) AUC {roc_auc_score(planted, score):.3f} "
        f"({time.perf_counter() - start:.2f} s)"
    )


def search(work: Path, n_vectors: int) -> None:
    base = work / "pairs"
    run("import", "shapes", "--n", "500", "--size", "32", "--seed", "9", "--out", str(base))
    folder = work / "pairs-folder"
    folder.mkdir()
    for sample in Dataset.open(str(base)).iter_samples():
        img = sample.decode()
        img.save(folder / f"{sample.key}-a.png")
        copy = ImageEnhance.Brightness(img).enhance(1.08)
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=40)
        (folder / f"{sample.key}-b.jpg").write_bytes(buf.getvalue())
    run("import", "folder", str(folder), "--out", str(work / "pairs-ds"))
    run("embed", str(work / "pairs-ds"), "--out", str(work / "pairs-emb"))
    ds = Dataset.open(str(work / "pairs-emb"))
    sources = ds.index(columns=["key", "source"]).to_pylist()
    emb = ds.embeddings()
    x = emb.normalised()
    row = {k: i for i, k in enumerate(emb.keys)}
    stem = {r["key"]: Path(r["source"]).stem for r in sources}
    by_stem = {stem[k]: row[k] for k in emb.keys}
    originals = [s for s in by_stem if s.endswith("-a")]
    index = neighbours.build(x)
    _, ids = neighbours.search(index, x[[by_stem[s] for s in originals]], 11)
    hits = sum(by_stem[s[:-2] + "-b"] in ids[i][1:] for i, s in enumerate(originals))
    print(f"\n3. search: recall@10 of the near copy, {len(originals)} pairs (pixels): {hits / len(originals):.3f}")
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n_vectors, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    start = time.perf_counter()
    ivf = neighbours.build(v) if n_vectors >= neighbours.IVF_FROM else None
    built = time.perf_counter() - start
    queries = v[rng.choice(n_vectors, 200, replace=False)]
    for label, index in (("IVF (similar's index)", ivf), ("exact", _flat(v))):
        if index is None:
            continue
        start = time.perf_counter()
        for q in queries:
            neighbours.search(index, q[None], 10)
        per = (time.perf_counter() - start) / len(queries) * 1000
        print(
            f"   {n_vectors:,} x 128 {label:22s}: {per:6.2f} ms per query"
            + (f" (built in {built:.1f} s)" if index is ivf else "")
        )


def map_render(work: Path, n: int) -> None:
    import os
    import shutil
    import threading

    from playwright.sync_api import sync_playwright

    from pixelforge.label.project import Project, ProjectConfig
    from pixelforge.label.server import create_app

    chromium = os.environ.get("PIXELFORGE_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        print("\n4. map render: skipped, no Chromium (apt-get install chromium, or set PIXELFORGE_CHROMIUM)")
        return
    shapes, emb, clustered, report = (work / n_ for n_ in ("map-shapes", "map-emb", "map-clustered", "map.html"))
    run("import", "shapes", "--n", str(n), "--size", "24", "--out", str(shapes))
    run("embed", str(shapes), "--out", str(emb))
    start = time.perf_counter()
    run("cluster", str(emb), "--out", str(clustered))
    made = time.perf_counter() - start
    run("report", str(clustered), "--out", str(report))
    stats = Dataset.open(clustered).stats()
    k = sum(c["id"] >= 0 for c in stats["clusters"])
    print(f"\n4. map of {n:,} samples ({stats['map']}, {k} clusters; cluster took {made:.1f} s)")
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Project(ProjectConfig(str(clustered), db=str(work / "map.sqlite")))),
            host="127.0.0.1",
            port=0,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        times: dict[str, list[float]] = {"report": [], "app": []}
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.as_uri(), wait_until="load")
            times["report"].append(page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd"))
            page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/#!map")
            page.wait_for_selector("body[data-map='drawn']", timeout=60_000)
            points = page.evaluate("() => mapState.data.keys.length")
            times["app"].append(page.evaluate("() => window.mapDrawnMs"))
            page.close()
        browser.close()
    server.should_exit = True
    thread.join(10)
    size = report.stat().st_size / 1e6
    print(f"   report ({size:.1f} MB HTML): loaded in {min(times['report']) / 1000:.2f} s")
    print(f"   app map ({points:,} points): drawn in {min(times['app']) / 1000:.2f} s after navigation")


def _flat(v: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(v.shape[1])
    index.add(v)
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="training time of the digits classifier")
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--map-samples", type=int, default=10_000)
    ap.add_argument("--only-map", action="store_true", help="run section 4 alone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pf-bench-organise-") as tmp:
        work = Path(tmp)
        if not args.only_map:
            model = clustering(work, args.minutes)
            outliers(work, model)
            search(work, args.vectors)
        map_render(work, args.map_samples)


if __name__ == "__main__":
    main()
