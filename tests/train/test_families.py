"""Tests for the GAN, VAE and classifier families on the shared loop, and the commands that use their runs."""

import csv
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pixelforge.cli import main
from pixelforge.models.gan import diff_augment
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from pixelforge.train.families.classifier import classification_report
from pixelforge.train.loop import ema_update

FAST = [
    "--image-size",
    "8",
    "--batch-size",
    "32",
    "--eval-every",
    "3",
    "--log-every",
    "1",
    "--seed",
    "3",
    "--device",
    "cpu",
    "--val-batches",
    "2",
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    assert main(["import", "digits", "--out", str(root / "digits")]) == 0
    assert (
        main(
            [
                "split",
                str(root / "digits"),
                "--out",
                str(root / "split"),
                "--val",
                "0.1",
                "--test",
                "0.2",
                "--stratify",
                "label",
                "--group",
                "none",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    return root / "split"


@pytest.fixture(scope="module")
def classifier_run(digits, tmp_path_factory):
    run = tmp_path_factory.mktemp("clf") / "run"
    assert (
        main(
            [
                "train",
                "classifier",
                "--data",
                str(digits),
                "--out",
                str(run),
                "--epochs",
                "8",
                "--image-size",
                "16",
                "--batch-size",
                "64",
                "--eval-every",
                "20",
                "--device",
                "cpu",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    return run


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _losses(run, column="loss"):
    return {int(r["step"]): r[column] for r in _rows(run / "metrics.csv") if r[column]}


# -- classifier ------------------------------------------------------------------------------------


def test_classifier_learns_digits_and_reports_the_test_split(classifier_run):
    result = json.loads((classifier_run / "result.json").read_text())
    test = result["final"]["test"]
    assert test["n"] == 361 and result["final"]["val"]["n"] == 179  # the split's sizes, test never trained on
    assert test["accuracy"] >= 0.95  # 8 epochs of the small CNN at 16 px
    confusion = np.array(test["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 361
    assert test["accuracy"] == pytest.approx(np.trace(confusion) / 361)
    assert test["per_class"]["3"]["n"] == int(confusion[3].sum())
    config = json.loads((classifier_run / "config.json").read_text())
    assert config["family"] == "classifier" and config["labels"] == [str(d) for d in range(10)]
    assert config["label_column"] == "label" and config["model"]["image_size"] == 16
    assert config["dataset"]["test"] == 361
    best = json.loads((classifier_run / "checkpoints" / "best.json").read_text())
    assert best["val"]["val_accuracy"] == result["best"]


def test_predict_writes_one_row_per_sample(classifier_run, digits, tmp_path, capsys):
    out = tmp_path / "pred.parquet"
    capsys.readouterr()
    assert main(["predict", str(classifier_run), "--data", str(digits), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    assert table.column_names == ["key", "predicted", "predicted_id", "confidence", "target", "error"]
    assert table.schema.metadata[b"pixelforge.label_column"] == b"label"
    rows = table.to_pylist()
    assert len(rows) == printed["rows"] == 1797 and printed["failed"] == 0
    assert [r["key"] for r in rows] == [r["key"] for r in Dataset.open(str(digits)).iter_rows(columns=["key"])]
    assert all(r["predicted"] == str(r["predicted_id"]) and 0.1 <= r["confidence"] <= 1 for r in rows)
    right = sum(r["predicted"] == r["target"] for r in rows)
    assert printed["accuracy"] == pytest.approx(right / 1797)
    assert main(["predict", str(classifier_run), "--data", str(digits), "--out", str(tmp_path / "p.csv")]) == 2
    assert "write predictions to a .parquet file" in capsys.readouterr().err


def test_classifier_on_another_column_and_a_missing_one(tmp_path, capsys):
    assert main(["import", "shapes", "--n", "120", "--size", "16", "--out", str(tmp_path / "shapes")]) == 0
    run = tmp_path / "shape-run"
    assert (
        main(
            [
                "train",
                "classifier",
                "--data",
                str(tmp_path / "shapes"),
                "--out",
                str(run),
                "--label",
                "colour",
                "--max-steps",
                "2",
                "--image-size",
                "16",
                "--batch-size",
                "16",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == ["blue", "green", "purple", "red", "white", "yellow"]  # sorted distinct values
    assert config["label_column"] == "colour" and config["model"]["num_classes"] == 6
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "classifier",
                "--data",
                str(tmp_path / "shapes"),
                "--out",
                str(tmp_path / "x"),
                "--label",
                "species",
                "--max-steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --label species:") and "its columns are key, " in err and "colour" in err
    assert len(err.splitlines()) == 1


def test_mixed_image_sizes_are_resized_by_the_loader(tmp_path):
    b = DatasetBuilder(str(tmp_path / "mixed"))
    for i in range(48):
        side = (12, 20, 33)[i % 3]
        buf = io.BytesIO()
        Image.new("RGB", (side, side + i % 5), (255 * (i % 2), 80, 0)).save(buf, "PNG")
        b.add(
            {
                "key": f"{i:09d}",
                "source_kind": "folder",
                "label": i % 2,
                "label_name": "ab"[i % 2],
                "width": side,
                "height": side + i % 5,
            },
            buf.getvalue(),
            "png",
        )
    b.finish(name="mixed", lineage=Lineage(command="test"))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "classifier",
                "--data",
                str(tmp_path / "mixed"),
                "--out",
                str(run),
                "--max-steps",
                "30",
                "--image-size",
                "16",
                "--batch-size",
                "16",
                "--eval-every",
                "30",
                "--device",
                "cpu",
                "--val-fraction",
                "0.2",
            ]
        )
        == 0
    )
    result = json.loads((run / "result.json").read_text())
    assert result["final"]["val"]["accuracy"] == 1.0  # red vs green: separable at once


def test_classification_report_counts():
    y = np.array([0, 0, 1, 1, 2, -1])
    pred = np.array([0, 1, 1, 1, 0, 2])
    r = classification_report(y, pred, ["a", "b", "c"])
    assert r["n"] == 5 and r["accuracy"] == 0.6
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert r["per_class"] == {
        "a": {"n": 2, "accuracy": 0.5},
        "b": {"n": 2, "accuracy": 1.0},
        "c": {"n": 1, "accuracy": 0.0},
    }


# -- GAN -------------------------------------------------------------------------------------------


def test_gan_resume_is_exact_and_logs_both_players(digits, tmp_path):
    args = ["--condition", "class", *FAST]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "gan", "--data", str(digits), "--out", str(straight), "--max-steps", "6", *args]) == 0
    assert main(["train", "gan", "--data", str(digits), "--out", str(split), "--max-steps", "3", *args]) == 0
    assert (
        main(["train", "gan", "--data", str(digits), "--out", str(split), "--max-steps", "6", "--resume", *args]) == 0
    )
    for column in ("loss", "d_loss", "g_loss", "d_real", "d_fake"):
        a, b = _losses(straight, column), _losses(split, column)
        assert sorted(a) == [1, 2, 3, 4, 5, 6] and a == b  # both optimisers and the EMA resume bit for bit
    ckpt = sorted((split / "checkpoints").glob("step_*"))[-1]
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "discriminator.safetensors",
        "generator.safetensors",
        "generator_ema.safetensors",
        "optimizer_discriminator.safetensors",
        "optimizer_generator.safetensors",
        "rng.safetensors",
        "state.json",
    ]
    result = json.loads((split / "result.json").read_text())
    assert result["best"] is None and result["val"] == {}  # no validation loss: best is the latest
    assert json.loads((split / "checkpoints" / "best.json").read_text())["dir"] == "step_0000006"


def test_gan_generates_marked_images_of_the_asked_class(digits, tmp_path):
    run = tmp_path / "gan"
    assert (
        main(
            [
                "train",
                "gan",
                "--data",
                str(digits),
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--condition",
                "class",
                *FAST,
            ]
        )
        == 0
    )
    out = tmp_path / "gen"
    assert main(["generate", str(run), "--class", "4", "--class", "9", "--n", "2", "--out", str(out)]) == 0
    rows = list(Dataset.open(str(out)).iter_rows())
    assert [(r["label"], r["label_name"]) for r in rows] == [(4, "4"), (4, "4"), (9, "9"), (9, "9")]
    assert all(r["source_kind"] == "generated" and json.loads(r["meta"])["family"] == "gan" for r in rows)
    assert main(["verify", str(out / "images"), "--json"]) == 0
    assert main(["generate", str(run), "--n", "2", "--out", str(tmp_path / "g2")]) == 2  # needs --class


def test_diff_augment_moves_and_cuts_exactly():
    x = torch.zeros(4, 3, 16, 16)
    x[:, :, 8, 8] = 1.0
    gen = torch.Generator().manual_seed(0)
    moved = diff_augment(x, ["translation"], gen)
    assert torch.equal(moved.sum(dim=(1, 2, 3)), torch.full((4,), 3.0))  # the dot moved, not lost (shift <= 2)
    again = diff_augment(x, ["translation"], torch.Generator().manual_seed(0))
    assert torch.equal(moved, again)  # randomness only from the generator
    ones = torch.ones(64, 3, 16, 16)
    cut = diff_augment(ones, ["cutout"], torch.Generator().manual_seed(1))
    zeros = (cut[:, 0] == 0).sum(dim=(1, 2))
    assert zeros.max() == 64 and zeros.min() >= 16  # an 8x8 square, partly off the edge at most by half
    coloured = diff_augment(ones * 0.5, ["color"], torch.Generator().manual_seed(2))
    assert coloured.shape == ones.shape and not torch.equal(coloured, ones * 0.5)


# -- VAE -------------------------------------------------------------------------------------------


def test_vae_resume_is_exact_and_logs_its_terms(digits, tmp_path):
    args = ["--condition", "class", "--kl-warmup-steps", "4", *FAST]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "vae", "--data", str(digits), "--out", str(straight), "--max-steps", "6", *args]) == 0
    assert main(["train", "vae", "--data", str(digits), "--out", str(split), "--max-steps", "3", *args]) == 0
    assert (
        main(["train", "vae", "--data", str(digits), "--out", str(split), "--max-steps", "6", "--resume", *args]) == 0
    )
    assert _losses(straight) == _losses(split)
    beta = _losses(split, "beta")
    assert [float(beta[s]) for s in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # the KL warm-up
    rows = _rows(split / "metrics.csv")
    assert rows[0].keys() >= {"reconstruction", "kl", "val_loss", "val_reconstruction", "val_kl"}
    for r in rows:
        if r["val_loss"]:
            assert float(r["val_loss"]) == pytest.approx(float(r["val_reconstruction"]) + float(r["val_kl"]), rel=1e-5)


def test_vae_encode_interpolate_and_generate(digits, tmp_path, capsys):
    run = tmp_path / "vae"
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                str(digits),
                "--out",
                str(run),
                "--max-steps",
                "3",
                "--latent-dim",
                "8",
                "--condition",
                "class",
                *FAST,
            ]
        )
        == 0
    )
    lat = tmp_path / "lat.parquet"
    assert main(["vae", "encode", str(run), "--data", str(digits), "--out", str(lat)]) == 0
    table = pq.read_table(lat)
    assert table.num_rows == 1797 and table.column_names == ["key", "label", "mu", "logvar", "error"]
    assert len(table.column("mu")[0].as_py()) == 8
    strip = tmp_path / "strip.png"
    assert (
        main(
            [
                "vae",
                "interpolate",
                str(run),
                "--data",
                str(digits),
                "--from",
                "000000003",
                "--to",
                "000000010",
                "--steps",
                "5",
                "--out",
                str(strip),
            ]
        )
        == 0
    )
    assert Image.open(strip).size == (5 * 64, 64)  # 8 px images enlarged 8x, side by side
    capsys.readouterr()
    assert (
        main(
            [
                "vae",
                "interpolate",
                str(run),
                "--data",
                str(digits),
                "--from",
                "nope",
                "--to",
                "000000010",
                "--out",
                str(strip),
            ]
        )
        == 2
    )
    assert "has no sample with key 'nope'" in capsys.readouterr().err
    assert (
        main(["generate", str(run), "--class", "1", "--n", "3", "--out", str(tmp_path / "gen"), "--mark-size", "0"])
        == 0
    )
    assert [r["label"] for r in Dataset.open(str(tmp_path / "gen")).iter_rows()] == [1, 1, 1]


# -- runs of one family are not another's --------------------------------------------------------


def test_run_directories_keep_their_family(digits, classifier_run, tmp_path, capsys):
    run = tmp_path / "gan"
    assert main(["train", "gan", "--data", str(digits), "--out", str(run), "--max-steps", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["train", "vae", "--data", str(digits), "--out", str(run), "--max-steps", "2", "--resume", *FAST]) == 2
    assert "holds a gan run, not a vae run" in capsys.readouterr().err
    assert main(["predict", str(run), "--data", str(digits), "--out", str(tmp_path / "p.parquet")]) == 2
    assert "is a gan run, not a classifier run" in capsys.readouterr().err
    assert main(["generate", str(classifier_run), "--n", "1", "--out", str(tmp_path / "g")]) == 2
    assert "does not generate images" in capsys.readouterr().err


def test_ema_warms_up():
    averaged, current = [torch.zeros(2)], [torch.ones(2)]
    update = ema_update(0.999)
    update(averaged, current, torch.tensor(0))  # decay min(0.999, 1/10)
    assert torch.allclose(averaged[0], torch.full((2,), 0.9))
    update(averaged, current, torch.tensor(10**6))  # decay 0.999 once warmed up
    assert torch.allclose(averaged[0], torch.full((2,), 0.9 + 0.1 * 0.001))
    counter = [torch.tensor(3)]
    update(counter, [torch.tensor(7)], torch.tensor(1))
    assert int(counter[0]) == 7  # integer buffers are copied


def test_evaluate_uses_a_trained_classifier(classifier_run, digits, tmp_path, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(digits),
                "--fake",
                str(digits),
                "--features",
                f"classifier:{classifier_run}",
                "--metrics",
                "fid",
                "--workers",
                "0",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["dims"] == 64 and abs(out["fid"]) < 1e-6  # a set against itself, on the net's 64-d features


def test_time_budget_schedule_follows_the_budget_used():
    from pixelforge.train.config import TrainConfig
    from pixelforge.train.loop import lr_at

    cfg = TrainConfig(lr=1.0, warmup_steps=10)
    assert lr_at(4, cfg, None, fraction=0.9) == 0.5  # warm-up first: (4 + 1) / 10
    assert lr_at(500, cfg, None, fraction=0.0) == 1.0
    assert lr_at(500, cfg, None, fraction=0.5) == pytest.approx(0.5)
    assert lr_at(500, cfg, None, fraction=1.3) == pytest.approx(0.0)  # past the budget: 0, never negative
    assert lr_at(55, cfg, 100) == pytest.approx(0.5)  # a step budget: halfway through the cosine


def test_adam_is_fused_only_over_contiguous_parameters():
    from pixelforge.train.config import TrainConfig
    from pixelforge.train.loop import make_optimizer

    cfg = TrainConfig(lr=0.1)
    torch.manual_seed(0)
    flat = torch.nn.Conv2d(4, 8, 3)
    fused = make_optimizer("adamw", flat.parameters(), cfg)
    assert fused.defaults["fused"] is True and fused.param_groups[0]["base_lr"] == 0.1
    # a channels_last convolution keeps torch's per-tensor loop (its moments return contiguous from a checkpoint)
    last = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    assert not make_optimizer("adam", last.parameters(), cfg).defaults["fused"]
    # fused computes the same step as the loop: two steps of the same gradients
    plain = torch.nn.Conv2d(4, 8, 3)
    plain.load_state_dict(flat.state_dict())
    loop = torch.optim.AdamW(plain.parameters(), lr=0.1, weight_decay=0.0)
    for _ in range(2):
        for opt, net in ((fused, flat), (loop, plain)):
            net(torch.ones(1, 4, 5, 5)).square().mean().backward()
            opt.step()
            opt.zero_grad()
    assert torch.allclose(flat.weight, plain.weight, atol=1e-6)
