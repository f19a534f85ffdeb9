"""Streamed training data: batches decoded from the shards by DataLoader workers, deterministic and resumable."""

import csv
import itertools
import json

import pytest
import torch

from pixelforge.cli import main
from pixelforge.store import Dataset
from pixelforge.train.data import index_table, split_indices
from pixelforge.train.stream import StreamBatches


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "digits"
    assert main(["import", "digits", "--out", str(out), "--samples-per-shard", "100"]) == 0
    return str(out)


def _stream(digits, workers, batch=64):
    ds = Dataset.open(digits)
    index, rows = index_table(ds)
    train_idx, _, _ = split_indices(index.keys, [r["split"] for r in rows], 0.05)
    return StreamBatches(ds, [rows[i] for i in train_idx], 8, batch, seed=3, num_workers=workers), len(train_idx)


def _take(stream, start, n):
    return list(itertools.islice(stream.iterate(start), n))


def test_each_training_image_once_per_epoch_whatever_the_workers(digits):
    s0, n = _stream(digits, 0)
    s2, _ = _stream(digits, 2)
    assert s0.per_epoch == n // 64 and len(s0.shards) == 18
    epoch0, epoch0_w2 = _take(s0, 0, s0.per_epoch), _take(s2, 0, s2.per_epoch)
    for (a, xa, ya, ca), (b, xb, yb, cb) in zip(epoch0, epoch0_w2):
        assert a == b and torch.equal(xa, xb) and torch.equal(ya, yb) and ca == cb
    x = torch.cat([b[1] for b in epoch0])
    assert x.shape == (s0.per_epoch * 64, 3, 8, 8) and -1 <= x.min() and x.max() <= 1
    # no image twice within an epoch (images identical pixel for pixel would be real duplicates: digits has none)
    flat = {tuple(v.flatten().tolist()) for v in x}
    assert len(flat) == len(x)
    nxt = _take(s0, s0.per_epoch, 1)[0]
    assert nxt[0] == s0.per_epoch and not torch.equal(nxt[1], epoch0[0][1])  # epoch 1 is another order


def test_resuming_mid_epoch_draws_the_same_batches(digits):
    s, _ = _stream(digits, 2)
    straight = _take(s, 0, 12)
    resumed = _take(s, 7, 5)
    for (a, xa, ya, _), (b, xb, yb, _) in zip(straight[7:], resumed):
        assert a == b and torch.equal(xa, xb) and torch.equal(ya, yb)
    end = s.per_epoch - 1  # across the epoch boundary too
    across = _take(s, end - 1, 3)
    assert [a for a, *_ in across] == [end - 1, end, end + 1]


def test_streamed_training_resumes_bit_for_bit(digits, tmp_path):
    args = [
        "--stream",
        "--image-size",
        "8",
        "--batch-size",
        "32",
        "--eval-every",
        "3",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--seed",
        "1",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "classifier", "--data", digits, "--out", str(a), "--max-steps", "6", *args]) == 0
    assert main(["train", "classifier", "--data", digits, "--out", str(b), "--max-steps", "3", *args]) == 0
    assert main(["train", "classifier", "--data", digits, "--out", str(b), "--max-steps", "6", "--resume", *args]) == 0

    def losses(run):
        with open(run / "metrics.csv", newline="") as f:
            return {r["step"]: r["loss"] for r in csv.DictReader(f) if r["loss"]}

    assert losses(a) == losses(b) and len(losses(a)) == 6
    config = json.loads((a / "config.json").read_text())
    assert config["dataset"]["streamed"] is True and config["train"]["stream"] is True
