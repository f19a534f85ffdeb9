"""Tests for the shared training loop through `pixelforge train diffusion`: resume, stopping, checks."""

import csv
import json

import pytest

from pixelforge.cli import main
from pixelforge.store import DatasetBuilder, Lineage

BASE = [
    "--condition",
    "class",
    "--image-size",
    "8",
    "--batch-size",
    "16",
    "--eval-every",
    "3",
    "--log-every",
    "1",
    "--warmup-steps",
    "2",
    "--lr",
    "1e-3",
    "--seed",
    "5",
    "--device",
    "cpu",
    "--sample-steps",
    "2",
    "--val-batches",
    "2",
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits"
    assert main(["import", "digits", "--out", str(out)]) == 0
    return str(out)


def _losses(run):
    with open(run / "metrics.csv", newline="") as f:
        return {int(r["step"]): r["loss"] for r in csv.DictReader(f) if r["loss"]}


def test_resume_continues_the_same_loss_curve(digits, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "diffusion", "--data", digits, "--out", str(straight), "--max-steps", "6", *BASE]) == 0
    assert main(["train", "diffusion", "--data", digits, "--out", str(split), "--max-steps", "3", *BASE]) == 0
    assert (
        main(["train", "diffusion", "--data", digits, "--out", str(split), "--max-steps", "6", "--resume", *BASE]) == 0
    )
    a, b = _losses(straight), _losses(split)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    assert a == b  # bit-for-bit the same losses after the resume
    result = json.loads((split / "result.json").read_text())
    assert result["steps"] == 6 and result["stopped"] == "reached --max-steps"
    assert sorted(p.name for p in (split / "checkpoints").glob("step_*")) == ["step_0000003", "step_0000006"]
    assert sorted(p.name for p in (split / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    cfg = json.loads((split / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 10 and cfg["labels"][3] == "3"
    assert cfg["dataset"]["train"] + cfg["dataset"]["val"] == 1797


def test_early_stopping_says_why(digits, tmp_path, capsys):
    run = tmp_path / "es"
    # a learning rate this small cannot lower the validation loss, so patience 1 stops at the 2nd evaluation
    code = main(
        [
            "train",
            "diffusion",
            "--data",
            digits,
            "--out",
            str(run),
            "--max-steps",
            "30",
            "--patience",
            "1",
            *BASE,
            "--lr",
            "1e-12",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 6
    assert result["stopped"].startswith("early stopping: validation loss did not improve for 1 evaluations")


def test_refuses_existing_run_and_bad_resume(digits, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "diffusion", "--data", digits, "--out", str(run), "--max-steps", "3", *BASE]) == 0
    capsys.readouterr()
    assert main(["train", "diffusion", "--data", digits, "--out", str(run), "--max-steps", "3", *BASE]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                digits,
                "--out",
                str(run),
                "--max-steps",
                "6",
                "--resume",
                *BASE,
                "--lr",
                "5e-4",
            ]
        )
        == 2
    )
    assert "lr differ from the stopped run" in capsys.readouterr().err


def test_bad_arguments(digits, tmp_path, capsys):
    cases = [
        (["--condition", "pose"], "--condition 'pose': choose one of none, class, text"),
        (["--optimizer", "lion"], "--optimizer 'lion': choose one of adam, adamw, sgd, rmsprop"),
        (["--image-size", "10"], "--image-size 10: must be a multiple of 4"),
        (["--device", "tpu"], "--device 'tpu': choose auto, cpu, cuda, cuda:N or mps"),
    ]
    for extra, message in cases:
        args = ["train", "diffusion", "--data", digits, "--out", str(tmp_path / "x"), "--max-steps", "1", *BASE, *extra]
        assert main(args) == 2
        assert message in capsys.readouterr().err
    assert main(["train", "diffusion", "--data", digits, "--out", str(tmp_path / "x")]) == 2
    assert "say when to stop" in capsys.readouterr().err


def test_config_file_and_unknown_keys(digits, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(
        "[train]\nmax_steps = 2\nbatch_size = 8\nimage_size = 8\neval_every = 2\nsample_steps = 2\n"
        '[diffusion]\ncondition = "none"\nprediction = "epsilon"\n'
    )
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                digits,
                "--out",
                str(tmp_path / "t"),
                "--config",
                str(toml),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["train"]["batch_size"] == 8 and cfg["model"]["prediction"] == "epsilon"
    assert cfg["model"]["condition"] == "none"
    toml.write_text("[train]\nbatchsize = 8\n")
    assert main(["train", "diffusion", "--data", digits, "--out", str(tmp_path / "u"), "--config", str(toml)]) == 2
    assert "unknown option(s) batchsize" in capsys.readouterr().err


def _tiny_dataset(path, fields):
    """40 flat 8 px images labelled 0/1; ``fields(i)`` adds columns to row i."""
    import io

    from PIL import Image

    b = DatasetBuilder(str(path))
    for i in range(40):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 5, 0, 0)).save(buf, "PNG")
        b.add(
            {"key": f"{i:09d}", "source_kind": "url", "label": i % 2, "width": 8, "height": 8, **fields(i)},
            buf.getvalue(),
            "png",
        )
    b.finish(name=path.name, lineage=Lineage(command="test"))


def test_refuses_opted_out_samples(tmp_path, capsys):
    _tiny_dataset(tmp_path / "d", lambda i: {"opt_out": "x-robots-tag: noai" if i < 3 else None})
    args = [
        "train",
        "diffusion",
        "--data",
        str(tmp_path / "d"),
        "--out",
        str(tmp_path / "r"),
        "--max-steps",
        "1",
        *BASE,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds 3 opted-out samples" in err and "pass --allow-opt-out" in err
    assert main(args + ["--allow-opt-out"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["opt_out_samples_used"] == 3


def test_on_the_fly_augmentation_is_deterministic(digits, tmp_path):
    args = ["--max-steps", "3", *BASE, "--augment", "hflip,rotate=10,brightness=0.2"]
    assert main(["train", "diffusion", "--data", digits, "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["train", "diffusion", "--data", digits, "--out", str(tmp_path / "b"), *args]) == 0
    plain = tmp_path / "plain"
    assert main(["train", "diffusion", "--data", digits, "--out", str(plain), "--max-steps", "3", *BASE]) == 0
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a == b and sorted(a) == [1, 2, 3]  # workers seed augmentation per step
    assert a != _losses(plain)  # and it does change what the model sees
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                digits,
                "--out",
                str(tmp_path / "c"),
                "--max-steps",
                "1",
                *BASE,
                "--augment",
                "sharpen=2",
            ]
        )
        == 2
    )


def test_policy_refuses_licences_it_forbids(tmp_path, capsys):
    _tiny_dataset(tmp_path / "d", lambda i: {"license": "cc-by-nc-4.0" if i < 4 else "cc-by-4.0"})
    args = ["train", "diffusion", "--data", str(tmp_path / "d"), "--max-steps", "1", *BASE]
    assert main(args + ["--out", str(tmp_path / "r1"), "--policy", "commercial"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 samples whose licence the commercial policy does not allow" in err
    assert main(args + ["--out", str(tmp_path / "r2"), "--policy", "research"]) == 0  # research allows them
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["train"]["policy"] == "research"


def test_flow_training_resumes_exactly_and_autocasts_on_bf16_cpus(digits, tmp_path, monkeypatch):
    import torch

    from pixelforge.train import loop
    from pixelforge.train.families.diffusion import DiffusionFamily

    autocast_seen = []
    original = DiffusionFamily.loss_terms

    def spy(self, *args, **kwargs):
        if kwargs.get("train", True):
            autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)  # as on a CPU with AVX512-BF16
    monkeypatch.setattr(DiffusionFamily, "loss_terms", spy)
    flow = [*BASE, "--prediction", "flow", "--timestep-sampling", "logit-normal", "--film", "--cpu-bf16"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "diffusion", "--data", digits, "--out", str(straight), "--max-steps", "4", *flow]) == 0
    assert autocast_seen == [True] * 4
    assert main(["train", "diffusion", "--data", digits, "--out", str(split), "--max-steps", "2", *flow]) == 0
    assert (
        main(["train", "diffusion", "--data", digits, "--out", str(split), "--max-steps", "4", "--resume", *flow]) == 0
    )
    assert _losses(straight) == _losses(split) and sorted(_losses(split)) == [1, 2, 3, 4]
    model = json.loads((split / "config.json").read_text())["model"]
    assert (model["prediction"], model["timestep_sampling"], model["film"]) == ("flow", "logit-normal", True)
    gen = tmp_path / "gen"
    args = ["generate", str(split), "--out", str(gen), "--class", "3", "--n", "2", "--steps", "3", "--mark-size", "0"]
    assert main([*args, "--sampler", "euler"]) == 0
    assert len(list((gen / "images").glob("*.png"))) == 2
    assert main([*args, "--sampler", "ddpm", "--overwrite"]) == 2  # a flow model has no stochastic DDPM sampler


def test_a_patched_text_model_trains_and_samples_from_the_cli(tmp_path):
    def caption(i):
        return {"caption": f"a {'red' if i % 2 else 'blue'} square"}

    _tiny_dataset(tmp_path / "d", caption)
    run, gen = tmp_path / "r", tmp_path / "g"
    patched = ["--condition", "text", "--patch-size", "2", "--widths", "16,32", "--snr-gamma", "20"]
    args = ["train", "diffusion", "--data", str(tmp_path / "d"), "--out", str(run), "--max-steps", "2"]
    assert main([*args, *BASE, *patched]) == 0
    model = json.loads((run / "config.json").read_text())["model"]
    assert (model["patch_size"], model["widths"], model["condition"]) == (2, "16,32", "text")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red square\n")
    gen_args = ["generate", str(run), "--out", str(gen), "--prompts", str(prompts), "--n", "2", "--steps", "3"]
    assert main([*gen_args, "--sampler", "dpm++", "--mark-size", "0"]) == 0
    assert len(list((gen / "images").glob("*.png"))) == 2
    assert main([*args, "--patch-size", "3", "--out", str(tmp_path / "bad")]) == 2
