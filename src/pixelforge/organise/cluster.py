"""`pixelforge cluster`: clusters and per-sample scores from a dataset's embedding, as new index columns.

Columns added (the samples' bytes are unchanged):

- ``cluster``: the cluster id (k-means, or HDBSCAN with -1 for noise); null for a sample without a vector.
- ``uniqueness``: cosine distance to the sample's k-th nearest neighbour (--neighbours): near copies
  score ~0, a sample unlike any other high.
- ``outlier``: an isolation forest's anomaly score (scikit-learn, 200 trees): about 0.5 for an
  ordinary sample, towards 1 for one that few random splits isolate. ``--outlier-method lof`` gives
  ``1 - 1/LOF`` instead (scikit-learn's local outlier factor over the k neighbours: 0 inside a
  cluster, 0.5 twice as sparse as its neighbours). On planted outliers (benchmarks/organise.py)
  the forest found them with ROC AUC 0.985, LOF 0.731.
- ``representativeness``: cosine similarity to the sample's cluster centre (noise: the nearest centre).
- ``map_x``, ``map_y``: the sample on a 2-D map of the embedding (UMAP with cosine distance when
  umap-learn is installed, the `organise` extra; else, or with ``--map pca``, the first two
  principal components); the report draws it.

stats.json lists each cluster: its size, its most central samples and a name made of its most
frequent label and caption words.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge import neighbours
from pixelforge.curate.shards import copy_shards
from pixelforge.errors import UsageError
from pixelforge.extras import missing, require
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Lineage, begin_run, config_to_dict, default_name, finalize, open_input, output_schema
from pixelforge.store import embeddings as store_embeddings

METHODS = ("kmeans", "hdbscan")
OUTLIER_METHODS = ("lof", "iforest")
AUTO_K = range(2, 41)  # the k values --k auto tries (capped at samples / 5)
SILHOUETTE_SAMPLE = 3000  # silhouette is scored on this many samples
CENTRAL = 5  # central samples listed per cluster
COLUMNS = (
    pa.field("cluster", pa.int32()),
    pa.field("uniqueness", pa.float32()),
    pa.field("outlier", pa.float32()),
    pa.field("representativeness", pa.float32()),
    pa.field("map_x", pa.float32()),
    pa.field("map_y", pa.float32()),
)
MAPS = ("auto", "umap", "pca")
_STOP = frozenset(
    "a an the of in on at to and or with without for from by is are was were be this that these those "
    "it its as into over under near photo image picture".split()
)


@dataclass
class ClusterConfig:
    """Options of `pixelforge cluster`."""

    embedding: str | None = None  # which of the dataset's embeddings (default: the newest)
    k: str = "auto"  # a number of clusters, or auto (silhouette)
    method: str = "kmeans"
    neighbours: int = 10
    outlier_method: str = "iforest"  # benchmarks/organise.py: AUC 0.985 against LOF's 0.731
    seed: int = 0
    map: str = "auto"  # auto (UMAP when installed, else PCA) | umap | pca
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    def validate(self) -> int | None:
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: choose {' or '.join(METHODS)}")
        if self.outlier_method not in OUTLIER_METHODS:
            raise UsageError(f"--outlier-method {self.outlier_method!r}: choose {' or '.join(OUTLIER_METHODS)}")
        if self.map not in MAPS:
            raise UsageError(f"--map {self.map!r}: choose {', '.join(MAPS)}")
        if self.map == "umap":
            require("organise", "--map umap")
        if self.neighbours < 1:
            raise UsageError(f"--neighbours {self.neighbours}: must be at least 1")
        self.executor.validate()
        if self.k == "auto":
            return None
        try:
            k = int(self.k)
        except ValueError:
            raise UsageError(f"--k {self.k!r}: give a number of clusters or auto") from None
        if k < 1:
            raise UsageError(f"--k {k}: must be at least 1")
        if self.method == "hdbscan":
            raise UsageError("--k: HDBSCAN finds the number of clusters itself; use --k auto with --method hdbscan")
        return k


@dataclass
class ClusterResult:
    out: str
    embedding: str
    clusters: int
    noise: int
    k_chosen_by: str
    silhouette: float | None
    seconds: float
    largest: list[dict[str, Any]]  # the biggest clusters: id, size, name


def choose_k(x: np.ndarray, seed: int) -> tuple[int, float]:
    """The k of AUTO_K with the best silhouette (cosine) on a sample of ``x``, and that silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), SILHOUETTE_SAMPLE), replace=False)]
    best = (2, -1.0)
    for k in AUTO_K:
        if k > max(2, len(sample) // 5):
            break
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(sample)
        if len(set(labels)) < 2:
            continue
        score = float(silhouette_score(sample, labels, metric="cosine"))
        if score > best[1]:
            best = (k, score)
    return best


def assign(x: np.ndarray, config: ClusterConfig, k: int | None) -> tuple[np.ndarray, str, float | None]:
    """Cluster labels of ``x`` (unit vectors), how k was chosen, and the silhouette when auto."""
    if config.method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        labels = HDBSCAN(min_cluster_size=max(5, len(x) // 200), metric="euclidean").fit_predict(x)
        return labels.astype(np.int32), "hdbscan", None
    from sklearn.cluster import KMeans, MiniBatchKMeans

    silhouette = None
    how = "--k"
    if k is None:
        k, silhouette = choose_k(x, config.seed)
        how = "silhouette"
    k = min(k, len(x))
    model = (KMeans if len(x) <= 50_000 else MiniBatchKMeans)(n_clusters=k, n_init=3, random_state=config.seed)
    return model.fit_predict(x).astype(np.int32), how, silhouette


def outlier_scores(x: np.ndarray, neighbours_k: int, method: str, seed: int) -> np.ndarray:
    """Outlier score of every row of ``x`` in [0, 1] (see the module docstring)."""
    if len(x) < 3:
        return np.zeros(len(x), np.float32)
    if method == "iforest":
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=200, random_state=seed).fit(x)
        return (-forest.score_samples(x)).astype(np.float32)
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=min(neighbours_k, len(x) - 1), metric="cosine").fit(x)
    factor = -lof.negative_outlier_factor_
    return np.clip(1.0 - 1.0 / np.maximum(factor, 1e-6), 0.0, None).astype(np.float32)


def project(x: np.ndarray, how: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``x`` and the method used (``how``: auto, umap or pca)."""
    if len(x) < 3:
        return np.zeros((len(x), 2), np.float32), "none"
    if how == "umap" or (how == "auto" and not missing("organise")):
        import warnings

        import umap

        with warnings.catch_warnings():  # "n_jobs overridden by random_state": reproducible, as wanted
            warnings.simplefilter("ignore", UserWarning)
            reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, len(x) - 1), random_state=seed)
            return reducer.fit_transform(x).astype(np.float32), "umap"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32), "pca"


def representativeness(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``x`` to its cluster's centre (noise, -1: to the nearest centre)."""
    ids = sorted(set(labels.tolist()) - {-1})
    if not ids:
        return np.full(len(x), np.nan, np.float32)
    centres = np.stack([x[labels == c].mean(axis=0) for c in ids])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    sims = x @ centres.T
    own = np.searchsorted(np.array(ids), labels)
    noise = labels == -1
    own[noise] = np.argmax(sims[noise], axis=1)
    return sims[np.arange(len(x)), own].astype(np.float32)


def cluster_name(rows: list[dict[str, Any]]) -> str:
    """A cluster's name: its most frequent label (with its share) and caption words."""
    parts = []
    labels = Counter(_label(r) for r in rows if _label(r) is not None)
    if labels:
        label, n = labels.most_common(1)[0]
        parts.append(f"{label} ({n / len(rows):.0%})")
    words = Counter(
        w
        for r in rows
        if r.get("caption")
        for w in re.findall(r"[a-z]+", r["caption"].lower())
        if w not in _STOP and len(w) > 2
    )
    parts.extend(w for w, _ in words.most_common(3))
    return ", ".join(str(p) for p in parts) or "(no labels or captions)"


def _label(row: dict[str, Any]) -> Any:
    return row.get("label_name") if row.get("label_name") is not None else row.get("label")


def cluster(
    inp: str, out: str, config: ClusterConfig, *, resume: bool = False, overwrite: bool = False
) -> ClusterResult:
    """Write ``out``: ``inp``'s samples with the cluster and score columns (module docstring)."""
    k = config.validate()
    start = time.monotonic()
    ds, _, _ = open_input(inp, out, overwrite, resume)
    emb = ds.embeddings(config.embedding)
    done = begin_run(out, "cluster", inp, config, resume)
    x_all = emb.normalised()
    valid = np.isfinite(x_all).all(axis=1)
    x = x_all[valid]
    n = len(x_all)
    cols = {
        "cluster": np.full(n, -2, np.int32),
        "uniqueness": np.full(n, np.nan, np.float32),
        "outlier": np.full(n, np.nan, np.float32),
        "representativeness": np.full(n, np.nan, np.float32),
        "map_x": np.full(n, np.nan, np.float32),
        "map_y": np.full(n, np.nan, np.float32),
    }
    mapped = "none"
    how, silhouette = "--k", None
    if len(x):
        labels, how, silhouette = assign(x, config, k)
        cols["cluster"][valid] = labels
        cols["uniqueness"][valid] = neighbours.kth_distance(x, max(1, min(config.neighbours, len(x) - 1)))
        cols["outlier"][valid] = outlier_scores(x, config.neighbours, config.outlier_method, config.seed)
        cols["representativeness"][valid] = representativeness(x, labels)
        coords, mapped = project(x, config.map, config.seed)
        cols["map_x"][valid], cols["map_y"][valid] = coords[:, 0], coords[:, 1]
    table = ds.index()
    key_row = emb.row_of()
    order = np.array([key_row.get(k, -1) for k in table.column("key").to_pylist()])
    for f in COLUMNS:
        values = cols[f.name]
        known = values != -2 if f.name == "cluster" else np.isfinite(values)
        picked = [values[i].item() if i >= 0 and known[i] else None for i in order]
        if f.name in table.column_names:
            table = table.drop_columns([f.name])
        table = table.append_column(f.name, pa.array(picked, type=f.type))
    schema = output_schema(ds, COLUMNS)
    summary = _summary(table.to_pylist())
    copy_shards(ds, out, table.select(schema.names).cast(schema), [], schema, config, label="cluster write", done=done)
    for name in ds.info.get("embeddings") or {}:
        store_embeddings.copy(ds.fs, ds.root, out, name)
    seconds = time.monotonic() - start
    stats = {
        "seconds": round(seconds, 3),
        "embedding": emb.name,
        "k_chosen_by": how,
        "map": mapped,
        "silhouette": None if silhouette is None else round(silhouette, 4),
        "clusters": summary,
    }
    finalize(
        out,
        name=default_name(out),
        lineage=Lineage(command="cluster", config=config_to_dict(config), inputs=[inp]),
        schema=schema,
        stats=stats,
        embeddings=ds.info.get("embeddings"),
    )
    real = [c for c in summary if c["id"] >= 0]
    noise = next((c["size"] for c in summary if c["id"] == -1), 0)
    return ClusterResult(out, emb.name, len(real), noise, how, stats["silhouette"], round(seconds, 3), real[:5])


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cluster (largest first): id, size, name, its CENTRAL most representative keys."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["cluster"] is not None:
            groups.setdefault(r["cluster"], []).append(r)
    out = []
    for c, members in groups.items():
        central = sorted(members, key=lambda r: -(r["representativeness"] or -2.0))[:CENTRAL]
        out.append(
            {"id": c, "size": len(members), "name": cluster_name(members), "central": [r["key"] for r in central]}
        )
    return sorted(out, key=lambda c: (-c["size"], c["id"]))
