"""audit --runs: the training runs that learnt from samples a takedown later removed, by key while their
data is on disk and by lineage once it is gone; runs on the takedown's output, or on data of another
origin that happens to share keys, are not flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pixelforge import console
from pixelforge.cli import main
from pixelforge.people.lineage import runs_trained_on_takedowns
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from tests.audit.conftest import PNG

REMOVED = ["000000001", "000000002", "000000003"]
TRAIN = ["--image-size", "16", "--batch-size", "4", "--max-steps", "1", "--device", "cpu", "--val-batches", "1"]


def fake_run(folder: Path, like: dict, dataset: Path) -> str:
    """A run folder whose config.json is the real run's ``like`` with another dataset record (train's shape)."""
    info = Dataset.open(str(dataset)).info
    record = dict(like["dataset"], path=str(dataset), name=info["name"], created_at=info["created_at"])
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(dict(like, dataset=record)))
    return str(folder)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, str]:
    """A project folder: shapes data, a takedown of 3 of its samples, datasets made before and after it,
    one real training run and fake ones (config.json as train writes it) on each dataset."""
    root = tmp_path_factory.mktemp("project")
    data, runs = root / "data", root / "runs"
    p = {k: data / k for k in ("old", "td", "after", "cur", "aug", "other")}
    assert main(["import", "shapes", "--n", "12", "--size", "16", "--out", str(p["old"])]) == 0
    request = root / "request.txt"
    request.write_text("".join(f"key:{k}\n" for k in REMOVED))
    assert main(["takedown", str(p["old"]), "--out", str(p["td"]), "--match", str(request)]) == 0
    # made from the takedown's output: clean; a curated copy of the old data that kept 2 of the 3
    assert main(["split", str(p["td"]), "--out", str(p["after"]), "--group", "none", "--processes", "1"]) == 0
    where = f"key <> '{REMOVED[0]}'"
    cur = ["curate", str(p["old"]), "--out", str(p["cur"]), "--only", "duplicates", "--where", where]
    assert main([*cur, "--processes", "1"]) == 0
    # an augmented copy of each old sample: KEY_aug1, the same photo under another key
    aug = ["prepare", str(p["old"]), "--out", str(p["aug"]), "--size", "16", "--augment", "hflip", "--copies", "1"]
    assert main([*aug, "--processes", "1"]) == 0
    # another origin with the same keys (every import numbers them from 0)
    assert main(["import", "shapes", "--n", "6", "--size", "16", "--seed", "5", "--out", str(p["other"])]) == 0
    real = runs / "real"
    train = ["train", "classifier", "--data", str(p["old"]), "--out", str(real), "--label", "shape", *TRAIN]
    assert main(train) == 0
    like = json.loads((real / "config.json").read_text())
    out = {k: str(v) for k, v in p.items()} | {"root": str(root), "runs": str(runs), "real": str(real)}
    for name in ("td", "after", "cur", "aug", "other"):
        out[f"on_{name}"] = fake_run(runs / f"on_{name}", like, p[name])
    gen = root / "generated"  # a set sampled from the real run
    b = DatasetBuilder(str(gen))
    b.add({"key": "000000001", "source_kind": "generated", "width": 1, "height": 1}, PNG, "png")
    b.finish(name="generated", lineage=Lineage(command="generate", config={"run": str(real)}, inputs=[str(p["old"])]))
    out["generated"] = str(gen)
    return out


def audit_json(ds: str, out: Path, runs: str) -> dict:
    assert main(["audit", ds, "--out", str(out), "--runs", runs, "--no-pixels", "--json"]) == 0
    return json.loads((out / "audit.json").read_text())["takedowns"]


def flagged(section: dict) -> dict[str, tuple[str, int | None, list[str]]]:
    (td,) = section["takedowns"]
    return {Path(r["run"]).name: (r["found_by"], r["removed_keys"], r["generated"]) for r in td["runs"]}


def test_runs_on_the_old_data_are_flagged_by_key_and_by_lineage_once_it_is_gone(work, tmp_path, capsys):
    section = audit_json(work["cur"], tmp_path / "a", work["root"])
    (td,) = section["takedowns"]
    assert td["path"] == work["td"] and td["removed"] == 3 and td["input_on_disk"]
    assert td["input"]["path"] == work["old"] and td["input"]["name"] == "old"
    assert section["runs_checked"] == 6
    assert flagged(section) == {
        "real": ("keys", 3, [work["generated"]]),
        "on_cur": ("keys", 2, []),  # the curated copy dropped one of the three
        "on_aug": ("keys", 6, []),  # the three and their augmented copies
    }
    assert section["flagged_runs"] == [work["on_aug"], work["on_cur"], work["real"]]
    capsys.readouterr()

    # the old data deleted: its run is flagged by lineage; the copy still holds its keys
    moved = Path(work["root"]).parent / "old-away"
    shutil.move(work["old"], moved)
    try:
        section = audit_json(work["cur"], tmp_path / "b", work["root"])
        assert section["takedowns"][0]["input_on_disk"] is False
        assert flagged(section) == {
            "real": ("lineage", None, [work["generated"]]),
            "on_cur": ("keys", 2, []),
            "on_aug": ("keys", 6, []),
        }
        out = capsys.readouterr().out
        assert json.loads(out)["takedowns"] == section
    finally:
        shutil.move(moved, work["old"])


def test_a_takedown_in_the_audited_datasets_lineage_is_found_outside_the_runs_folder(work, tmp_path):
    """--runs names only the runs; the takedown is an ancestor of the audited dataset."""
    found = runs_trained_on_takedowns(work["runs"], work["after"])
    (td,) = found.takedowns
    assert td.path == work["td"]
    assert {Path(r.run).name: (r.found_by, r.removed_keys) for r in td.runs} == {
        "real": ("keys", 3),
        "on_cur": ("keys", 2),
        "on_aug": ("keys", 6),
    }
    assert found.flagged_runs == [work["on_aug"], work["on_cur"], work["real"]]
    # without that lineage and with no takedown under the runs folder there is nothing to check against
    assert runs_trained_on_takedowns(work["runs"], work["other"]).takedowns == []


def test_the_summary_prints_the_flagged_runs(work, tmp_path, capsys, monkeypatch):
    # the table's long paths on one line each: the console is made at import, and a COLUMNS set then fixes
    # its width for good (a pytest-xdist worker's environment); `_width` is what Rich's width setter sets
    monkeypatch.setattr(console.out, "_width", 400)
    assert main(["audit", work["after"], "--out", str(tmp_path / "a"), "--runs", work["root"], "--no-pixels"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "takedowns: 1 found; of 6 runs under" in out and "3 trained on samples later taken down" in out
    assert "3 of 3" in out and "2 of 3" in out and "on_cur" in out and "on_td" not in out
