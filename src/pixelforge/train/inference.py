"""Using trained runs on a dataset: `pixelforge predict` (classifiers) and `pixelforge vae encode|interpolate`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelforge import media
from pixelforge.device import resolve_device
from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store import Dataset
from pixelforge.train.rundir import LoadedRun, load_run


def image_batches(
    ds: Dataset, size: int, batch_size: int, columns: list[str] | None = None
) -> Iterator[tuple[list[dict[str, Any]], torch.Tensor, list[tuple[dict[str, Any], str]]]]:
    """(rows, images in [0, 1] (B, 3, size, size), failures) streamed over ``ds``, center-cropped as in training.

    An image that does not decode is returned in ``failures`` with its reason, never dropped silently.
    """
    rows: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []
    failures: list[tuple[dict[str, Any], str]] = []
    for sample in ds.iter_samples():
        row = sample.row if columns is None else {k: sample.row.get(k) for k in columns}
        try:
            img = media.resize(sample.decode(), size, "center_crop")
        except Exception as exc:  # a damaged shard member: reported per row
            failures.append((row, f"decode_error: {exc}"))
            continue
        rows.append(row)
        arrays.append(np.asarray(img, dtype=np.uint8))
        if len(rows) == batch_size:
            yield rows, _to_tensor(arrays), failures
            rows, arrays, failures = [], [], []
    if rows or failures:
        yield rows, _to_tensor(arrays), failures


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    if not arrays:
        return torch.zeros((0, 3, 1, 1))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)


def _target(row: dict[str, Any], column: str) -> str | None:
    """The true value of the label column as text (label: its label_name, else the number)."""
    if column == "label":
        if row.get("label_name") is not None:
            return str(row["label_name"])
        return None if row.get("label") is None else str(row["label"])
    value = row.get(column)
    return None if value is None else str(value)


@dataclass
class PredictResult:
    out: str
    rows: int
    failed: int
    accuracy: float | None  # over rows with a known target
    seconds: float


def predict(
    run_path: str, data: str, out: str, batch_size: int = 256, checkpoint: str = "best", device: str = "auto"
) -> PredictResult:
    """Write key, predicted, predicted_id, confidence, target (and error) for every sample of ``data``."""
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if not out.endswith(".parquet"):
        raise UsageError(f"--out {out}: write predictions to a .parquet file")
    dev = resolve_device(device)
    run = load_run(run_path, checkpoint, dev, family="classifier")
    ds = Dataset.open(data)
    column = run.config.get("label_column", "label")
    names = run.labels
    size = int(run.config["model"]["image_size"])
    schema = pa.schema(
        [
            ("key", pa.string()),
            ("predicted", pa.string()),
            ("predicted_id", pa.int32()),
            ("confidence", pa.float32()),
            ("target", pa.string()),
            ("error", pa.string()),
        ],
        metadata={"pixelforge.label_column": column, "pixelforge.run": run.run_id},
    )
    start = time.monotonic()
    n = failed = judged = right = 0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out}.tmp"
    with pq.ParquetWriter(tmp, schema) as writer, track("predict", total=ds.num_samples) as bar:
        for rows, x, failures in image_batches(ds, size, batch_size):
            cols: dict[str, list[Any]] = {f: [] for f in schema.names}
            if rows:
                with torch.inference_mode():
                    probs = run.model(x.to(dev)).float().softmax(1).cpu()
                conf, ids = probs.max(1)
                for row, i, c in zip(rows, ids.tolist(), conf.tolist()):
                    target = _target(row, column)
                    cols["key"].append(row["key"])
                    cols["predicted"].append(names[i])
                    cols["predicted_id"].append(i)
                    cols["confidence"].append(c)
                    cols["target"].append(target)
                    cols["error"].append(None)
                    if target is not None:
                        judged += 1
                        right += target == names[i]
            for row, reason in failures:
                for f, v in (
                    ("key", row["key"]),
                    ("predicted", None),
                    ("predicted_id", None),
                    ("confidence", None),
                    ("target", _target(row, column)),
                    ("error", reason),
                ):
                    cols[f].append(v)
            writer.write_table(pa.table(cols, schema=schema))
            n += len(rows) + len(failures)
            failed += len(failures)
            bar.advance(len(rows) + len(failures))
    Path(tmp).replace(out)
    return PredictResult(
        out=out,
        rows=n,
        failed=failed,
        accuracy=right / judged if judged else None,
        seconds=round(time.monotonic() - start, 2),
    )


# -- VAE ---------------------------------------------------------------------------------------------


def _vae_run(run_path: str, checkpoint: str, device: str) -> tuple[LoadedRun, torch.device]:
    dev = resolve_device(device)
    return load_run(run_path, checkpoint, dev, family="vae"), dev


def _class_ids(run: LoadedRun, rows: list[dict[str, Any]], dev: torch.device) -> torch.Tensor | None:
    if run.family.cfg.condition != "class":
        return None
    labels = [r.get("label") for r in rows]
    if any(v is None or not 0 <= int(v) < run.family.cfg.num_classes for v in labels):
        raise UsageError("this VAE is class-conditional: every sample needs a label the run was trained on")
    return torch.tensor([int(v) for v in labels], device=dev)


def vae_encode(
    run_path: str, data: str, out: str, batch_size: int = 256, checkpoint: str = "best", device: str = "auto"
) -> dict[str, Any]:
    """Write key, label and the latent mean (and log-variance) of every sample to a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not out.endswith(".parquet"):
        raise UsageError(f"--out {out}: write latent codes to a .parquet file")
    run, dev = _vae_run(run_path, checkpoint, device)
    ds = Dataset.open(data)
    dim = run.family.cfg.latent_dim
    vec = pa.list_(pa.float32(), dim)
    schema = pa.schema(
        [("key", pa.string()), ("label", pa.int64()), ("mu", vec), ("logvar", vec), ("error", pa.string())],
        metadata={"pixelforge.run": run.run_id},
    )
    n = 0
    tmp = f"{out}.tmp"
    with pq.ParquetWriter(tmp, schema) as writer, track("encode", total=ds.num_samples) as bar:
        for rows, x, failures in image_batches(ds, run.family.cfg.image_size, batch_size):
            mu = logvar = torch.zeros((0, dim))
            if rows:
                with torch.inference_mode():
                    mu, logvar = run.model.encode(x.to(dev), _class_ids(run, rows, dev))
            bad = [r for r, _ in failures]
            writer.write_table(
                pa.table(
                    {
                        "key": [r["key"] for r in rows + bad],
                        "label": [r.get("label") for r in rows + bad],
                        "mu": pa.array(mu.cpu().tolist() + [None] * len(bad), vec),
                        "logvar": pa.array(logvar.cpu().tolist() + [None] * len(bad), vec),
                        "error": [None] * len(rows) + [reason for _, reason in failures],
                    },
                    schema=schema,
                )
            )
            n += len(rows) + len(bad)
            bar.advance(len(rows) + len(bad))
    Path(tmp).replace(out)
    return {"out": out, "rows": n, "latent_dim": dim}


def vae_interpolate(
    run_path: str,
    data: str,
    key_from: str,
    key_to: str,
    out: str,
    steps: int = 8,
    checkpoint: str = "best",
    device: str = "auto",
) -> dict[str, Any]:
    """A PNG strip decoding ``steps`` points on the line between two samples' latent means.

    A class-conditional VAE decodes each point with the class of the nearer end.
    """
    if steps < 2:
        raise UsageError(f"--steps {steps}: need at least 2 (the two ends)")
    run, dev = _vae_run(run_path, checkpoint, device)
    ds = Dataset.open(data)
    size = run.family.cfg.image_size
    found: dict[str, tuple[dict[str, Any], torch.Tensor]] = {}
    for rows, x, _ in image_batches(ds, size, 256):
        for row, img in zip(rows, x):
            if row["key"] in (key_from, key_to):
                found[row["key"]] = (row, img)
    missing = [k for k in (key_from, key_to) if k not in found]
    if missing:
        raise UsageError(
            f"{data} has no sample with key {missing[0]!r}: list keys with "
            f'`pixelforge query {data} "SELECT key FROM samples LIMIT 10"`'
        )
    rows = [found[key_from][0], found[key_to][0]]
    x = torch.stack([found[key_from][1], found[key_to][1]]).to(dev)
    with torch.inference_mode():
        y = _class_ids(run, rows, dev)
        mu, _ = run.model.encode(x, y)
        t = torch.linspace(0, 1, steps, device=dev)[:, None]
        z = (1 - t) * mu[0] + t * mu[1]
        ys = None if y is None else torch.where(t[:, 0] < 0.5, y[0], y[1])
        imgs = run.model.decode(z, ys)
    arr = imgs.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    strip = np.concatenate(list(arr), axis=1)
    media.save_grid(strip, out, scale=max(1, math.ceil(64 / size)))
    return {"out": out, "steps": steps, "from": key_from, "to": key_to}
