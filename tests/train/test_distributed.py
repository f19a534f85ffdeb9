"""DDP training (`--nproc 2`, gloo on CPU): the same steps as one process, only rank 0 writes, resume across N.

Why the tolerances hold: with --batch-size B each of 2 processes takes its B/2 rows of every global
batch, the step's noise is drawn for the global batch and split (diffusion), batch norm normalises
over the global batch, and DDP averages the gradients. What remains is the order of floating-point
sums (a convolution's gradient summed over 4 + 4 rows then averaged, instead of over 8): about 1e-7
relative per step. Adam turns that into a change of up to one learning rate for a weight whose gradient
is near 0 (an attention key's bias has none at all: softmax ignores a shift), so each weight tensor is
compared by its mean absolute difference, and single elements only against one step of the rate.
Measured on this machine: losses equal to the 6 decimals metrics.csv keeps (classifier: 7e-7 relative);
diffusion weights: worst tensor mean 1.3e-6, worst element 6.3e-5 (one conv weight); the mean
tolerance is 20x that, and the same run's weights 4 steps apart exceed it in 181 of 185 tensors.
Dropout masks are NOT the same as one process's (each process draws its own), so the classifier runs
with --dropout 0.
"""

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pixelforge.cli import main
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from pixelforge.train.data import Batches, index_table, split_indices
from pixelforge.train.distributed import GlobalBatchNorm
from pixelforge.train.stream import StreamBatches

LOSS_RTOL = 1e-4  # per-step training loss, relative
WEIGHT_MEAN_ATOL = 2.5e-5  # final weights: mean absolute difference per tensor
WEIGHT_MAX_ATOL = 1e-3  # final weights: any one element, one step at lr 1e-3
BASE = [
    "--image-size",
    "8",
    "--batch-size",
    "8",
    "--log-every",
    "1",
    "--eval-every",
    "4",
    "--device",
    "cpu",
    "--seed",
    "3",
    "--val-batches",
    "1",
    "--sample-steps",
    "2",
    "--warmup-steps",
    "2",
    "--lr-schedule",
    "constant",
]  # a cosine's horizon would change with --max-steps on resume
# float32: these tests check that the processes split the batch exactly, to 1e-4; under bf16 autocast (on by
# default where the CPU has it) one process's and two processes' sums differ by bf16's rounding, ~1e-3
DIFFUSION = ["--condition", "class", "--lr", "1e-3", "--no-cpu-bf16"]
CLASSIFIER = ["--dropout", "0"]


def _make_dataset(path, n=96, per_shard=16):
    """``n`` 8 px images in 4 classes (a bright quadrant per class, on noise), ``per_shard`` per shard."""
    rng = np.random.default_rng(0)
    b = DatasetBuilder(str(path), samples_per_shard=per_shard)
    for i in range(n):
        label = i % 4
        arr = rng.integers(0, 90, (8, 8, 3), dtype=np.uint8)
        y, x = divmod(label, 2)
        arr[y * 4 : (y + 1) * 4, x * 4 : (x + 1) * 4] += 160
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        b.add(
            {
                "key": f"{i:09d}",
                "source_kind": "url",
                "label": label,
                "label_name": "abcd"[label],
                "width": 8,
                "height": 8,
            },
            buf.getvalue(),
            "png",
        )
    b.finish(name=path.name, lineage=Lineage(command="test"))
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _make_dataset(tmp_path_factory.mktemp("ddp") / "quadrants")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def _train(family, data, out, steps, nproc, *extra):
    args = ["train", family, "--data", data, "--out", str(out), "--max-steps", str(steps), *BASE, *extra]
    if nproc != 1:
        args += ["--nproc", str(nproc)]
    assert main(args) == 0
    return out


def _rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _losses(run):
    return {int(r["step"]): float(r["loss"]) for r in _rows(run) if r["loss"]}


def _assert_same_losses(a, b, steps):
    la, lb = _losses(a), _losses(b)
    assert sorted(la) == sorted(lb) == list(range(1, steps + 1))
    for s in la:
        assert lb[s] == pytest.approx(la[s], rel=LOSS_RTOL), f"step {s}"


def _assert_same_weights(a, b, step, names):
    for name in names:
        wa = load_file(str(a / "checkpoints" / f"step_{step:07d}" / f"{name}.safetensors"))
        wb = load_file(str(b / "checkpoints" / f"step_{step:07d}" / f"{name}.safetensors"))
        assert sorted(wa) == sorted(wb)  # no DDP 'module.' prefix: the same format whatever N
        for k in wa:
            diff = (wb[k].double() - wa[k].double()).abs()
            assert diff.mean() <= WEIGHT_MEAN_ATOL and diff.max() <= WEIGHT_MAX_ATOL, (name, k, diff.mean(), diff.max())


@pytest.fixture(scope="module")
def diffusion_1(data, root):
    return _train("diffusion", data, root / "diffusion_1", 8, 1, *DIFFUSION)


@pytest.fixture(scope="module")
def diffusion_2(data, root):
    return _train("diffusion", data, root / "diffusion_2", 8, 2, *DIFFUSION)


# -- (a) N x (B / N) trains as 1 x B ----------------------------------------------------------------------


def test_diffusion_two_processes_match_one(diffusion_1, diffusion_2):
    _assert_same_losses(diffusion_1, diffusion_2, 8)
    _assert_same_weights(diffusion_1, diffusion_2, 8, ["unet", "unet_ema"])
    r1, r2 = (json.loads((r / "result.json").read_text()) for r in (diffusion_1, diffusion_2))
    assert r2["steps"] == 8 and r2["stopped"] == "reached --max-steps"
    assert r2["val"]["val_loss"] == pytest.approx(r1["val"]["val_loss"], rel=LOSS_RTOL)


def test_classifier_two_processes_match_one(data, root):
    one = _train("classifier", data, root / "clf_1", 6, 1, *CLASSIFIER)
    two = _train("classifier", data, root / "clf_2", 6, 2, *CLASSIFIER)
    _assert_same_losses(one, two, 6)
    # batch norm's running statistics are weights too: they match only if it normalised over the global batch
    _assert_same_weights(one, two, 6, ["net"])
    accuracy = {int(r["step"]): float(r["accuracy"]) for r in _rows(two) if r["accuracy"]}
    assert accuracy == {int(r["step"]): float(r["accuracy"]) for r in _rows(one) if r["accuracy"]}
    assert json.loads((two / "config.json").read_text())["train"]["nproc"] == 2


def test_vae_two_processes_match_one(data, root):
    # the VAE's loss calls its encode and decode_logits methods, not forward: they too must go through DDP
    one = _train("vae", data, root / "vae_1", 6, 1)
    two = _train("vae", data, root / "vae_2", 6, 2)
    _assert_same_losses(one, two, 6)
    # not the raw weights: the VAE's convolution biases just before a batch norm have a zero gradient in exact
    # arithmetic, so Adam moves them by rounding noise (by up to lr, in one process too); what they compute
    # is nearly the same, as the validation scalars (eval mode: running statistics) show: the running means
    # take in those biases, so their rounding noise reaches the validation scalars at ~1e-4 (fused Adam: 1.1e-4)
    val_one, val_two = ([r for r in _rows(run) if r["val_loss"]] for run in (one, two))
    assert [r["step"] for r in val_one] == [r["step"] for r in val_two] == ["4", "6"]  # --eval-every 4, the end
    for a, b in zip(val_one, val_two):
        for key in ("val_loss", "val_reconstruction", "val_kl"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=3 * LOSS_RTOL)


def test_time_budget_stops_every_process_on_the_same_step(data, root):
    # rank 0's clock decides: were a process to stop a step early or late, the others would wait for it
    # in a collective and the run would never end (the test's timeout fails it). The GAN also covers
    # two wrapped modules and draws that are not split (each process its own generator).
    run = root / "gan_budget"
    args = ["train", "gan", "--data", data, "--out", str(run), "--max-minutes", "0.02", *BASE, "--nproc", "2"]
    assert main(args) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["stopped"] == "reached --max-minutes 0.02" and result["steps"] >= 1
    train_steps = [int(r["step"]) for r in _rows(run) if r["loss"]]
    assert train_steps == list(range(1, result["steps"] + 1))
    assert (run / "checkpoints" / f"step_{result['steps']:07d}").is_dir()


# -- (b) only rank 0 writes --------------------------------------------------------------------------------


def test_only_rank_zero_writes(diffusion_1, diffusion_2):
    def files(run):
        return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts)

    assert files(diffusion_2) == files(diffusion_1)  # no second metrics.csv, sample grid or checkpoint directory
    assert len(list((diffusion_2 / "tensorboard").iterdir())) == 1  # one event file: one writer
    rows = _rows(diffusion_2)
    train_steps = [int(r["step"]) for r in rows if r["loss"]]
    eval_steps = [int(r["step"]) for r in rows if r["val_loss"]]
    assert train_steps == list(range(1, 9)) and eval_steps == [4, 8]  # one row per logged step, none twice
    assert len(rows) == 10


# -- (c) resume across a change of N -----------------------------------------------------------------------


def test_resume_from_two_processes_with_one(data, root, diffusion_1):
    run = _train("diffusion", data, root / "resume_2_to_1", 4, 2, *DIFFUSION)
    _train("diffusion", data, run, 8, 1, *DIFFUSION, "--resume")
    _assert_same_losses(diffusion_1, run, 8)
    _assert_same_weights(diffusion_1, run, 8, ["unet", "unet_ema"])
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["nproc"] == 1  # the resumed run's


def test_resume_from_one_process_with_two(data, root, diffusion_1):
    run = _train("diffusion", data, root / "resume_1_to_2", 4, 1, *DIFFUSION)
    _train("diffusion", data, run, 8, 2, *DIFFUSION, "--resume")
    _assert_same_losses(diffusion_1, run, 8)
    _assert_same_weights(diffusion_1, run, 8, ["unet", "unet_ema"])


# -- (d) bad arguments stop at once with one line ------------------------------------------------------------


def test_bad_nproc_and_indivisible_batch(data, tmp_path, capsys):
    cases = [
        (["--nproc", "0"], "--nproc 0: must be at least 1"),
        (
            ["--nproc", "3"],
            "--batch-size 8 does not split over 3 processes (each takes batch-size / nproc images): "
            "pass a multiple of 3, e.g. --batch-size 9",
        ),
    ]
    for extra, message in cases:
        code = main(
            ["train", "classifier", "--data", data, "--out", str(tmp_path / "x"), "--max-steps", "1", *BASE, *extra]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"Error: {message}"
    assert not (tmp_path / "x").exists()


def test_nproc_under_torchrun_must_match_its_processes(monkeypatch):
    from pixelforge.errors import UsageError
    from pixelforge.train.config import TrainConfig
    from pixelforge.train.distributed import join, must_spawn

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = TrainConfig(data="d", out="o", max_steps=1, nproc=4, batch_size=8)
    assert not must_spawn(cfg)  # torchrun started the processes: train() does not start more
    with pytest.raises(UsageError, match=r"^--nproc 4 under torchrun, which started 2 processes: drop --nproc"):
        join(cfg)


def test_an_error_in_the_processes_is_one_line(data, tmp_path, capsys):
    # --condition text needs captions: the family finds out in every process, rank 0's message is shown
    code = main(
        [
            "train",
            "diffusion",
            "--data",
            data,
            "--out",
            str(tmp_path / "t"),
            "--max-steps",
            "1",
            *BASE,
            "--condition",
            "text",
            "--nproc",
            "2",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("Error: --condition text: some samples have no caption") and len(err.splitlines()) == 1
    assert not (tmp_path / "t" / "config.json").exists()


# -- the pieces, without processes ---------------------------------------------------------------------------


def test_in_memory_batches_split_the_global_batch(data):
    ds = Dataset.open(data)
    index, rows = index_table(ds)
    table = index  # labels are enough to tell the rows apart
    whole = Batches(table, 8, seed=1)
    parts = [Batches(table, 8, seed=1, part=(r, 2)) for r in range(2)]
    assert parts[0].per_epoch == whole.per_epoch == len(table) // 8
    for step in (0, 1, whole.per_epoch - 1, whole.per_epoch, 3 * whole.per_epoch + 2):  # across epochs too
        assert torch.equal(torch.cat([p.indices(step) for p in parts]), whole.indices(step))
        assert len(set(parts[0].indices(step).tolist()) & set(parts[1].indices(step).tolist())) == 0


def test_streamed_batches_split_the_global_batch_and_decode_disjoint_rows(data):
    ds = Dataset.open(data)
    index, rows = index_table(ds)
    train_idx, _, _ = split_indices(index.keys, [r["split"] for r in rows], 0.05)
    train_rows = [rows[i] for i in train_idx]

    def stream(part):
        return StreamBatches(ds, train_rows, 8, 8, seed=2, num_workers=0, group_shards=2, part=part)

    whole, parts = stream((0, 1)), [stream((r, 2)) for r in range(2)]
    n = 2 * whole.per_epoch + 3  # two epochs and a bit: group and epoch boundaries
    for start in (0, 5):  # from the start, and resumed mid-epoch
        a = list(_take(whole.iterate(start), n))
        b0, b1 = list(_take(parts[0].iterate(start), n)), list(_take(parts[1].iterate(start), n))
        for (s, x, y, c), (s0, x0, y0, c0), (s1, x1, y1, c1) in zip(a, b0, b1):
            assert s == s0 == s1 and x0.shape[0] == x1.shape[0] == 4
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y) and c0 + c1 == c
    # each process decodes only its rows: within an epoch, the two processes' positions never meet
    size = len(train_rows)
    taken = [np.flatnonzero(p.mine(0, size)) for p in parts]
    assert len(np.intersect1d(taken[0], taken[1])) == 0
    assert len(taken[0]) + len(taken[1]) == whole.per_epoch * 8


def _take(iterator, n):
    for _, item in zip(range(n), iterator):
        yield item


def test_global_batch_norm_is_batch_norm_in_one_process():
    # with a world of 1 (a gloo group of one process) it must be torch's BatchNorm, forward and backward
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = torch.nn.BatchNorm2d(3, momentum=0.2)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 2)
            ref.bias.uniform_(-1, 1)
        ours = GlobalBatchNorm(3, momentum=0.2)
        ours.load_state_dict(ref.state_dict())
        x = (torch.randn(5, 3, 4, 4) * 3 + 1).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y_ref, y = ref(x), ours(x2)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        (y_ref * torch.arange(240.0).view(5, 3, 4, 4)).sum().backward()
        (y * torch.arange(240.0).view(5, 3, 4, 4)).sum().backward()
        torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v)  # running mean, unbiased running var, count
        ours.eval(), ref.eval()
        torch.testing.assert_close(ours(x2), ref(x), rtol=1e-5, atol=1e-5)
    finally:
        dist.destroy_process_group()
