"""--resume of curate, split and prepare: a run killed with SIGKILL after its first shard finishes
when rerun with --resume, keeps what it had written, and ends equal to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.curate import stage
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Dataset

CLI = "import sys; from pixelforge.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """240 shapes in 12 shards of 20: writing them takes long enough to stop a run in the middle."""
    out = tmp_path_factory.mktemp("resume") / "shapes"
    assert (
        main(
            [
                "import",
                "shapes",
                "--n",
                "240",
                "--size",
                "32",
                "--seed",
                "2",
                "--samples-per-shard",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return str(out)


def kill_after_first_shard(args: list[str], out: Path) -> dict[str, tuple[int, int]]:
    """Run the CLI with ``args`` in a subprocess, SIGKILL it as soon as a shard of ``out`` exists
    under its final name; return the finished shards' (inode, mtime_ns)."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if shards.is_dir() and any(p.suffix == ".tar" for p in shards.iterdir()):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be stopped"
    assert not (out / "dataset.json").exists()
    done = sorted(p for p in shards.iterdir() if p.suffix == ".tar")
    assert 1 <= len(done) < 12  # stopped in the middle: some shards written, some not
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}


def rows(path) -> list[dict]:
    table = pq.read_table(Path(path) / "index.parquet")
    return sorted(table.to_pylist(), key=lambda r: r["key"])


def members(path) -> dict[str, bytes]:
    return {s.key: s.image for s in Dataset.open(path).iter_samples()}


@pytest.mark.parametrize(
    "command",
    [
        ["curate", "--no-watermark", "--drop-duplicates"],
        ["split", "--val", "0.2", "--test", "0.1", "--stratify", "label"],
        ["prepare", "--size", "16", "--augment", "hflip,rotate=10", "--copies", "1"],
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(many_shards, tmp_path, command):
    name, *flags = command
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([name, many_shards, "--out", str(whole), *flags, "--processes", "1"]) == 0
    before = kill_after_first_shard([name, many_shards, "--out", str(killed), *flags, "--processes", "1"], killed)
    # without --resume the partial output is refused, with the fix named
    assert main([name, many_shards, "--out", str(killed), *flags]) == 2
    assert main([name, many_shards, "--out", str(killed), *flags, "--processes", "1", "--resume"]) == 0
    for shard, stamp in before.items():  # finished shards were kept, not written again
        p = killed / "shards" / shard
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    assert rows(killed) == rows(whole)
    assert members(killed) == members(whole)
    assert not (killed / ".work").exists()
    if name == "curate":
        assert json.loads((killed / "curation.json").read_text()) == json.loads((whole / "curation.json").read_text())


def test_resume_refuses_other_settings(many_shards, tmp_path, capsys):
    out = tmp_path / "k"
    kill_after_first_shard(["prepare", many_shards, "--out", str(out), "--size", "16", "--processes", "1"], out)
    assert main(["prepare", many_shards, "--out", str(out), "--size", "24", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "size=16" in err and "pass the same options or use --overwrite" in err
    # how the work runs (processes) may change
    assert main(["prepare", many_shards, "--out", str(out), "--size", "16", "--resume", "--processes", "2"]) == 0
    assert Dataset.open(out).num_samples == 240


def test_resume_of_a_finished_dataset_is_refused(many_shards, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["split", many_shards, "--out", str(out), "--processes", "1"]) == 0
    assert main(["split", many_shards, "--out", str(out), "--resume"]) == 2
    assert "already a finished dataset: nothing to resume" in capsys.readouterr().err


def test_curate_resume_reuses_saved_scores(many_shards, tmp_path, monkeypatch):
    """A run stopped after scoring (before any shard) does not score again when resumed."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    config = stage.CurateConfig(watermark=False, executor=ExecutorSettings(processes=1))
    stage.curate(many_shards, str(whole), config)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stage, "copy_shards", stop)
        with pytest.raises(KeyboardInterrupt):
            stage.curate(many_shards, str(stopped), config)
    saved = sorted(p.name for p in (stopped / ".work").iterdir() if p.name.startswith("scores-"))
    assert len(saved) == 12 and saved[0] == "scores-000000-0-20.arrow"

    import pixelforge.curate.worker as worker

    def no_scoring(task):
        raise AssertionError(f"scored {task.shard} again")

    monkeypatch.setattr(worker, "score_shard", no_scoring)
    stage.curate(many_shards, str(stopped), config, resume=True)
    assert rows(stopped) == rows(whole)


def test_scores_saved_in_another_layout_are_scored_again(many_shards, tmp_path, monkeypatch):
    """A score table saved by an older pixelforge (no format mark, no near-copy thumbnails) is not
    read back on --resume: that task is scored again, and the result equals an uninterrupted run."""
    import pyarrow as pa

    from pixelforge.curate.columns import NEAR_THUMB

    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    config = stage.CurateConfig(watermark=False, executor=ExecutorSettings(processes=1))
    stage.curate(many_shards, str(whole), config)
    with monkeypatch.context() as m:
        m.setattr(stage, "copy_shards", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            stage.curate(many_shards, str(stopped), config)
    old = stopped / ".work" / "scores-000003-0-20.arrow"
    table = pa.ipc.open_file(pa.BufferReader(old.read_bytes())).read_all()
    meta = {k: v for k, v in table.schema.metadata.items() if k != b"format"}
    table = table.drop_columns([NEAR_THUMB]).replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    old.write_bytes(sink.getvalue().to_pybytes())

    import pixelforge.curate.worker as worker

    scored = []
    real = worker.score_shard
    monkeypatch.setattr(worker, "score_shard", lambda task: scored.append(task.shard) or real(task))
    stage.curate(many_shards, str(stopped), config, resume=True)
    assert scored == ["000003.tar"]
    assert rows(stopped) == rows(whole)


def test_resume_of_a_run_begun_before_an_option_existed_is_refused(many_shards, tmp_path, capsys, monkeypatch):
    """The run's plan has no `dedup` (an older pixelforge): what it did instead is unknown, so --resume
    says so and names --overwrite, rather than asking for a value no flag can give."""
    out = tmp_path / "old"
    config = stage.CurateConfig(watermark=False, executor=ExecutorSettings(processes=1))
    with monkeypatch.context() as m:
        m.setattr(stage, "copy_shards", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            stage.curate(many_shards, str(out), config)
    plan_file = out / ".work" / "plan.json"
    plan = json.loads(plan_file.read_text())
    del plan["config"]["dedup"]
    plan_file.write_text(json.dumps(plan))
    args = ["curate", many_shards, "--out", str(out), "--no-watermark", "--processes", "1", "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "started by an older pixelforge, without the option(s) dedup; use --overwrite" in err
