"""`pixelforge train reward` and `train diffusion --init`: fine-tuning a text-to-image run toward judges or ratings."""

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.store import Dataset, DatasetBuilder, Lineage

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
TINY = ["--image-size", "8", "--device", "cpu", "--seed", "3", "--log-every", "1", "--sample-steps", "2"]
TEXT = ["--condition", "text", "--patch-size", "2", "--widths", "16,32"]


def _squares(path, caption_colour, drawn_colour=None, n=40):
    """n flat 8 px images; row i's caption asks for caption_colour(i) and the image is drawn_colour(i)."""
    from PIL import Image

    drawn_colour = drawn_colour or caption_colour
    b = DatasetBuilder(str(path), extra_fields=[__import__("pyarrow").field("colour", __import__("pyarrow").string())])
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), COLOURS[drawn_colour(i)]).save(buf, "PNG")
        asked = caption_colour(i)
        b.add(
            {
                "key": f"{i:09d}",
                "source_kind": "url",
                "width": 8,
                "height": 8,
                "caption": f"a {asked} square",
                "colour": drawn_colour(i),
            },
            buf.getvalue(),
            "png",
        )
    b.finish(name=path.name, lineage=Lineage(command="test"))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A red/blue squares dataset, a colour judge trained on it, a 3-step text diffusion base run."""
    root = tmp_path_factory.mktemp("reward")
    data = _squares(root / "data", lambda i: "red" if i % 2 else "blue")
    judge, base = str(root / "judge"), str(root / "base")
    assert main(["train", "classifier", "--data", data, "--out", judge, "--label", "colour", "--epochs", "6",
                 "--batch-size", "8", "--eval-every", "20", *TINY]) == 0  # fmt: skip
    assert main(["train", "diffusion", "--data", data, "--out", base, "--max-steps", "3", "--batch-size", "8",
                 "--eval-every", "3", *TEXT, *TINY]) == 0  # fmt: skip
    prompts = root / "prompts.txt"
    prompts.write_text("a red square\na blue square\n")
    return {"root": root, "data": data, "judge": judge, "base": base, "prompts": str(prompts)}


def _reward(setup, out, *extra):
    return main(["train", "reward", "--base", setup["base"], "--out", str(out), "--prompts", setup["prompts"],
                 "--reward", f"classifier:{setup['judge']}", "--batch-size", "4", "--group", "2", "--eval-every", "2",
                 "--sampling-steps", "2", "--val-batches", "1", *TINY, *extra])  # fmt: skip


def test_the_judge_reads_colours(setup):
    from pixelforge.train.reward import parse_judge

    judge = parse_judge(f"classifier:{setup['judge']}", torch.device("cpu"))
    assert judge.names == ["blue", "red"]
    x = torch.tensor([COLOURS["red"], COLOURS["blue"]], dtype=torch.float32)[:, :, None, None].expand(2, 3, 8, 8)
    p = judge.log_probs(x / 127.5 - 1).exp()
    assert p.argmax(1).tolist() == [1, 0]  # the fixtures' judge must be right for the reward tests to mean anything


@pytest.mark.parametrize("method", ["rwr", "draft"])
def test_reward_run_is_an_ordinary_diffusion_run(setup, tmp_path, method):
    run = tmp_path / "tuned"
    assert _reward(setup, run, "--max-steps", "4", "--method", method) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["family"], cfg["trained_as"]) == ("diffusion", "reward")
    base_cfg = json.loads((setup["root"] / "base" / "config.json").read_text())
    assert cfg["model"] == base_cfg["model"]  # the base's network, loadable as a diffusion run
    assert cfg["train"]["init"] == setup["base"] and cfg["train"]["data"] == setup["data"]
    assert cfg["reward"]["base"] == setup["base"] and cfg["reward"]["base_checkpoint"] == "step_0000003"
    assert cfg["reward"]["options"]["method"] == method
    assert cfg["reward"]["reward"] == {"kind": "classifier", "judges": [f"classifier:{setup['judge']}"]}
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert metrics[0].split(",")[:6] == ["step", "epoch", "lr", "loss", "reward", "drift"]
    logged = [dict(zip(metrics[0].split(","), r.split(","))) for r in metrics[1:]]
    steps = [r for r in logged if r["drift"]]
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4]
    # the weights start as the base's (drift is measured before each update), then move a little
    assert float(steps[0]["drift"]) == 0.0 and 0 < float(steps[-1]["drift"]) < 0.1
    assert all(0 < float(r["reward"]) <= 1 for r in steps)
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 4 and 0 < result["val"]["val_reward"] <= 1
    gen = tmp_path / "gen"
    assert main(["generate", str(run), "--prompt", "a red square", "--n", "2", "--steps", "2", "--out", str(gen),
                 "--mark-size", "0"]) == 0  # fmt: skip
    meta = json.loads(next(Dataset.open(str(gen)).iter_rows(columns=["meta"]))["meta"])
    assert meta["tuned_from"] == setup["base"] and meta["tuned_toward"] == [f"classifier:{setup['judge']}"]
    html = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(html)]) == 0
    page = html.read_text()
    assert "Reward fine-tuning" in page and f"{setup['base']} (step_0000003)" in page


def test_reward_resumes(setup, tmp_path):
    run = tmp_path / "r"
    assert _reward(setup, run, "--max-steps", "2") == 0
    assert _reward(setup, run, "--max-steps", "4", "--resume") == 0
    assert json.loads((run / "result.json").read_text())["steps"] == 4
    # a diffusion run cannot resume it as plain training
    assert main(["train", "diffusion", "--data", setup["data"], "--out", str(run), "--max-steps", "6", "--resume",
                 *TEXT, *TINY]) == 2  # fmt: skip


def test_anchor_holds_the_weights_to_the_base(setup, tmp_path):
    drifts = {}
    for anchor in ("0", "1000"):
        run = tmp_path / anchor
        assert _reward(setup, run, "--max-steps", "4", "--anchor", anchor, "--lr", "1e-3") == 0
        rows = (run / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",")
        drifts[anchor] = [float(dict(zip(header, r.split(",")))["drift"]) for r in rows[1:] if r.split(",")[5]]
    assert drifts["1000"][-1] < drifts["0"][-1]


def test_init_starts_from_the_runs_weights(setup, tmp_path):
    from pixelforge.train.rundir import load_run

    run = tmp_path / "cont"
    # --init takes the base's model options; a learning rate of ~0 leaves its weights where they were
    assert main(["train", "diffusion", "--data", setup["data"], "--out", str(run), "--init", setup["base"],
                 "--max-steps", "1", "--lr", "1e-12", "--batch-size", "8", *TINY]) == 0  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["patch_size"] == 2 and cfg["model"]["widths"] == "16,32"
    a, b = load_run(setup["base"]).model, load_run(str(run)).model
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    bad = ["train", "diffusion", "--data", setup["data"], "--out", str(tmp_path / "bad"), "--max-steps", "1", *TINY]
    assert main([*bad, "--init", setup["base"], "--widths", "8,16"]) == 2
    assert main([*bad, "--init", setup["judge"]]) == 2
    assert main([*bad, "--init", str(tmp_path / "nothing")]) == 2


def test_rwr_weights():
    from pixelforge.train.families.reward import rwr_weights

    s = torch.log(torch.tensor([0.9, 0.1, 0.5, 0.5]))
    # exp(s) / mean(exp(s)): 0.9 / 0.5 ...
    assert torch.allclose(rwr_weights(s, 1.0), torch.tensor([1.8, 0.2, 1.0, 1.0]))
    # a lower temperature sharpens: p^2 / mean(p^2), mean(p^2) = (0.81 + 0.01 + 0.25 + 0.25) / 4 = 0.33
    assert torch.allclose(rwr_weights(s, 0.5), torch.tensor([0.81, 0.01, 0.25, 0.25]) / 0.33)


def test_reward_scale_bounds_the_rewards_share_of_the_gradient():
    from pixelforge.train.families.reward import _add_scaled

    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    data = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]  # norm 5
    a.grad, b.grad = torch.tensor([6.0, 8.0]), torch.tensor([0.0])  # the reward's: norm 10
    _add_scaled([a, b], data, 0.5)  # c = 0.5 x 5 / 10 = 0.25
    assert a.grad.tolist() == [4.5, 2.0] and b.grad.tolist() == [4.0]
    # a reward gradient already under the bound is added unscaled; a parameter the data loss left alone
    # (None) takes the reward's share only
    a.grad, b.grad = torch.tensor([0.3, 0.4]), torch.tensor([1.0])
    _add_scaled([a, b], [torch.tensor([3.0, 0.0]), None], 0.5)
    assert torch.allclose(a.grad, torch.tensor([3.3, 0.4])) and b.grad.tolist() == [1.0]


def test_reward_every_n_steps(setup, tmp_path):
    run = tmp_path / "every"
    args = ("--max-steps", "4", "--reward-every", "2", "--reward-scale", "0.5", "--lr", "1e-3")
    assert _reward(setup, run, *args) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    rewards = {int(r["step"]): r["reward"] for r in rows if r["loss"]}
    # steps 0 and 2 (rows 1 and 3) follow the reward; 1 and 3 train on the data alone
    assert [bool(rewards[k]) for k in (1, 2, 3, 4)] == [True, False, True, False]
    assert json.loads((run / "config.json").read_text())["reward"]["options"]["reward_every"] == 2


def test_judge_jitter_shifts_by_at_most_n_pixels():
    from pixelforge.train.families.reward import jitter

    x = -torch.ones(64, 3, 8, 8)
    x[:, :, 4, 4] = 1.0
    gen = torch.Generator().manual_seed(0)
    assert jitter(x, 0, gen) is x
    out = jitter(x, 2, gen)
    assert out.shape == x.shape
    where = out[:, 0].flatten(1).argmax(1)
    dy, dx = (where // 8 - 4).abs(), (where % 8 - 4).abs()
    assert int(dy.max()) == 2 and int(dx.max()) == 2  # every shift up to 2 happens in 64 draws, none beyond
    assert sorted(set((where // 8).tolist())) == [2, 3, 4, 5, 6]
    assert abs(float((out - out.round()).std()) - 0.03) < 0.003  # the noise


def test_sampling_with_grad_matches_and_backpropagates(setup):
    from pixelforge.models.sampling import sample_diffusion, sample_with_grad
    from pixelforge.train.rundir import load_run

    run = load_run(setup["base"])
    unet, cfg = run.model, run.family.cfg
    cond = run.family._caption_cache()(["a red square"] * 2)
    uncond = run.family._caption_cache()([""] * 2)
    kw = dict(steps=3, sampler_name="ddim", guidance=2.0, device=torch.device("cpu"))
    plain = sample_diffusion(unet, cfg, cond, uncond, generator=torch.Generator().manual_seed(0), **kw)
    for p in unet.parameters():
        p.requires_grad_(True)
    x = sample_with_grad(unet, cfg, cond, uncond, generator=torch.Generator().manual_seed(0), grad_steps=1, **kw)
    assert torch.allclose(x, plain, atol=1e-5)  # the same images
    x.sum().backward()
    assert sum(float(p.grad.abs().sum()) for p in unet.parameters() if p.grad is not None) > 0
    assert torch.is_grad_enabled()
    with torch.no_grad():
        y = sample_with_grad(unet, cfg, cond, uncond, generator=torch.Generator().manual_seed(0), grad_steps=1, **kw)
    assert not y.requires_grad and torch.is_grad_enabled()


def test_stated_class(setup, tmp_path):
    from pixelforge.prompts import read_prompts
    from pixelforge.train.reward import parse_judge

    judge = parse_judge(f"classifier:{setup['judge']}", torch.device("cpu"))
    assert judge.stated({"prompt": "a Red square"}, "row 1") == 1
    with pytest.raises(UsageError, match="names none of the judge's classes"):
        judge.stated({"prompt": "a green square"}, "row 1")
    with pytest.raises(UsageError, match=r"names several \(blue, red\)"):
        judge.stated({"prompt": "a red square on a blue background"}, "row 1")
    by_column = parse_judge(f"classifier:{setup['judge']}:colour", torch.device("cpu"))
    assert by_column.stated({"prompt": "a red square on a blue background", "colour": "red"}, "row 1") == 1
    with pytest.raises(UsageError, match="states colour 'green', not a class"):
        by_column.stated({"prompt": "x", "colour": "green"}, "row 1")
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('prompt,colour\n"a red, shiny square",red\n')
    assert read_prompts(str(csv_file)) == [{"prompt": "a red, shiny square", "colour": "red"}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a blue square", "colour": "blue"}\n\n')
    assert read_prompts(str(jsonl)) == [{"prompt": "a blue square", "colour": "blue"}]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UsageError, match="no prompts"):
        read_prompts(str(tmp_path / "empty.txt"))
    (tmp_path / "noprompt.csv").write_text("text\nhello\n")
    with pytest.raises(UsageError, match="'prompt' column"):
        read_prompts(str(tmp_path / "noprompt.csv"))


def test_bad_arguments_exit_2(setup, tmp_path, capsys):
    out = str(tmp_path / "x")
    common = ["--prompts", setup["prompts"], "--out", out, "--max-steps", "1", *TINY]
    cases = {
        "--method": (["--base", setup["base"], "--reward", f"classifier:{setup['judge']}", "--method", "ppo"],
                     "choose one of rwr, draft"),
        "--reward kind": (["--base", setup["base"], "--reward", "clip:foo"], "choose classifier:RUN"),
        "not a run": (["--base", str(tmp_path), "--reward", f"classifier:{setup['judge']}"], "not a diffusion run"),
        "judge not a run": (["--base", setup["base"], "--reward", "classifier:/nowhere"], "not a run directory"),
        "draft-k": (["--base", setup["base"], "--reward", f"classifier:{setup['judge']}", "--draft-k", "11"],
                    "--draft-k 11: choose 1 to --sampling-steps (10)"),
        "ratings without features": (["--base", setup["base"], "--reward", f"ratings:{setup['data']}"],
                                     "pass --rating-features"),
        "every without data": (["--base", setup["base"], "--reward", f"classifier:{setup['judge']}",
                                "--reward-every", "2", "--data-weight", "0"], "give --data-weight > 0"),
        "a prompt the judge cannot read": (["--base", setup["base"], "--reward", f"classifier:{setup['judge']}",
                                            "--prompts", str(setup["root"] / "green.txt")], "names none"),
    }  # fmt: skip
    (setup["root"] / "green.txt").write_text("a green square\n")
    for name, (args, message) in cases.items():
        capsys.readouterr()
        assert main(["train", "reward", *common, *args]) == 2, name
        assert message in capsys.readouterr().err.replace("\n", " "), name


def _ratings_project(setup, tmp_path, judgements: int):
    """Generated-like images that obey their caption half the time; a person prefers (and rates higher) the
    obeying ones."""
    from pixelforge.label.db import DB_NAME, AnnotationDB

    a = _squares(tmp_path / "a", lambda i: "red" if i % 2 else "blue", lambda i: "red" if i % 4 < 2 else "blue", 16)
    b = _squares(tmp_path / "b", lambda i: "red" if i % 2 else "blue", lambda i: "blue" if i % 4 < 2 else "red", 16)
    db = AnnotationDB(f"{a}/{DB_NAME}")
    db.set_setting("datasets", [a, b])
    obeys = {i: (("red" if i % 2 else "blue") == ("red" if i % 4 < 2 else "blue")) for i in range(16)}
    for i in range(min(judgements, 16)):
        # pair i: A's image i against B's image i (drawn in the other colour): the one that obeys wins
        db.save(f"{i:09d}+{i:09d}", "compare", "a" if obeys[i] else "b", "ann")
        db.save(f"{i:09d}", "faithfulness", 5 if obeys[i] else 1, "ann")
    return a


def test_ratings_reward_is_fitted_to_peoples_choices(setup, tmp_path):
    from pixelforge.train.reward import Judge, fit_ratings, parse_judge

    project = _ratings_project(setup, tmp_path, 16)
    judge: Judge = parse_judge(f"classifier:{setup['judge']}", torch.device("cpu"))
    fit = fit_ratings(project, [judge], torch.device("cpu"))
    # 16 compare votes + 8 x 8 rating pairs (obeying rated 5, the others 1)
    assert (fit["pairs"], fit["images"]) == (16 + 64, 32)
    assert fit["weights"][0] > 0  # the judge finding the stated colour is what people prefer
    assert fit["train_accuracy"] == 1.0 and fit["heldout_accuracy"] == 1.0
    run = tmp_path / "tuned"
    code = main(["train", "reward", "--base", setup["base"], "--out", str(run), "--prompts", setup["prompts"],
                 "--reward", f"ratings:{project}", "--rating-features", f"classifier:{setup['judge']}",
                 "--max-steps", "2", "--batch-size", "4", "--group", "2", "--sampling-steps", "2", *TINY])  # fmt: skip
    assert code == 0
    described = json.loads((run / "config.json").read_text())["reward"]["reward"]
    assert described["kind"] == "ratings" and described["fit"]["heldout_accuracy"] == 1.0


def test_too_few_ratings_exit_2(setup, tmp_path, capsys):
    project = _ratings_project(setup, tmp_path, 2)  # 2 votes and 1 rating pair
    code = main(["train", "reward", "--base", setup["base"], "--out", str(tmp_path / "t"), "--prompts",
                 setup["prompts"], "--reward", f"ratings:{project}", "--rating-features",
                 f"classifier:{setup['judge']}", "--max-steps", "1", *TINY])  # fmt: skip
    assert code == 2
    assert "3 usable judgements" in capsys.readouterr().err


def test_the_label_app_compares_a_base_run_with_its_tuned_run(setup, tmp_path, monkeypatch, capsys):
    """label serve RUN_A RUN_B --task compare --prompts: both runs draw the prompts, the app pairs them blind."""
    import pixelforge.label.server as server

    tuned = tmp_path / "tuned"
    assert _reward(setup, tuned, "--max-steps", "2") == 0
    served = []
    monkeypatch.setattr(server, "serve", lambda project, cfg: served.append(project))
    args = ["label", "serve", setup["base"], str(tuned), "--task", "compare", "--prompts", setup["prompts"]]
    assert main([*args, "--n", "3"]) == 0
    (project,) = served
    a, b = project.ds.path, project.ds_b.path
    assert a.startswith(setup["base"] + "/compare-") and b.startswith(str(tuned) + "/compare-")
    assert a.split("/")[-1] == b.split("/")[-1]  # one comparison: the same folder name in both runs
    # 2 prompts x 3 images from each run, paired prompt by prompt, each run's images made by that run
    assert len(project.items) == 6
    for item in project.items.values():
        assert item.rows["a"]["caption"] == item.rows["b"]["caption"]
    runs = {side: {r["source"].split("#")[0] for r in Dataset.open(d).iter_rows()} for side, d in (("a", a), ("b", b))}
    assert runs == {"a": {setup["base"]}, "b": {str(tuned)}}
    assert project.db.path == Path(a) / "annotations.sqlite"
    # served again: the images are reused, not drawn again
    stamp = (Path(a) / "dataset.json").stat().st_mtime_ns
    assert main([*args, "--n", "3"]) == 0
    assert (Path(a) / "dataset.json").stat().st_mtime_ns == stamp and served[1].ds.path == a
    # other settings: another comparison
    assert main([*args, "--n", "1"]) == 0
    assert served[2].ds.path != a and len(served[2].items) == 2
    # the tuned run trained further: its new best checkpoint draws again, into another folder
    assert _reward(setup, tuned, "--max-steps", "4", "--resume") == 0
    assert main([*args, "--n", "3"]) == 0
    assert served[3].ds.path not in (a, served[2].ds.path) and len(served[3].items) == 6
    # a prompts CSV (as train reward reads it): its prompt column is drawn
    table = tmp_path / "prompts.csv"
    table.write_text('prompt,colour\n"a red square",red\n')
    assert main([*args[:-1], str(table), "--n", "1"]) == 0
    assert {i.rows["a"]["caption"] for i in served[4].items.values()} == {"a red square"}
    # a run against a dataset, two runs without prompts, prompts for datasets: one line each, exit 2
    capsys.readouterr()
    for bad, message in (
        (["label", "serve", setup["base"], setup["data"], "--task", "compare", "--prompts", setup["prompts"]],
         "is not a training run"),
        (["label", "serve", setup["base"], str(tuned), "--task", "compare"], "give --prompts FILE"),
        (["label", "serve", setup["base"], setup["judge"], "--task", "compare", "--prompts", setup["prompts"]],
         "does not draw from prompts"),
        (["label", "serve", setup["data"], setup["data"], "--task", "compare", "--n", "2"],
         "--n: only when DIR_A and DIR_B are training runs"),
        (["label", "serve", setup["data"], setup["data"], "--task", "compare", "--prompts", setup["prompts"]],
         "--prompts: only when DIR_A and DIR_B are training runs"),
        (["label", "serve", setup["data"], "--prompts", setup["prompts"]], "--prompts: only for --task compare"),
    ):  # fmt: skip
        assert main(bad) == 2, bad
        assert message in capsys.readouterr().err.replace("\n", " "), bad
    assert len(served) == 5


def test_rwr_resumes_exactly_with_its_scored_samples(setup, tmp_path):
    """rwr learns from each batch of scored samples for --updates steps: a run stopped in the middle of a
    batch resumes with it (from the checkpoint) and ends with the uninterrupted run's weights."""
    from safetensors.torch import load_file

    common = ("--method", "rwr", "--updates", "3", "--lr-schedule", "constant")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _reward(setup, whole, *common, "--max-steps", "4") == 0
    assert _reward(setup, parts, *common, "--max-steps", "2") == 0  # stops with 1 of the batch's 3 steps left
    saved = load_file(str(parts / "checkpoints" / "step_0000002" / "family_state.safetensors"))
    assert saved["rwr_uses"].tolist() == [2] and saved["rwr_images"].shape == (4, 3, 8, 8)
    p = saved["rwr_prompts"].tolist()  # --group 2: two prompts of the file, each drawn twice
    assert p[0] == p[1] and p[2] == p[3] and set(p) <= {0, 1}
    assert _reward(setup, parts, *common, "--max-steps", "4", "--resume") == 0
    a = load_file(str(whole / "checkpoints" / "step_0000004" / "unet.safetensors"))
    b = load_file(str(parts / "checkpoints" / "step_0000004" / "unet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reward_tuning_refuses_several_processes():
    """--nproc is refused by the command; under torchrun (the world size given) the family refuses."""
    from types import SimpleNamespace

    from pixelforge.train.families.reward import RewardConfig, RewardFamily

    with pytest.raises(UsageError, match="train reward runs in one process, not 2"):
        RewardFamily(RewardConfig(), torch.device("cpu"), SimpleNamespace(nproc=2))
