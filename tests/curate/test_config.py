"""--config FILE.toml for curate, split and prepare: the file's table fills the config, flags win."""

import dataclasses
import inspect
import json

import pytest

from pixelforge.cli import main
from pixelforge.curate import commands
from pixelforge.curate.split import SplitConfig
from pixelforge.curate.stage import CurateConfig
from pixelforge.prepare import commands as prepare_commands
from pixelforge.prepare.stage import PrepareConfig

PIPELINE = """
[curate]
only = "duplicates"
hamming = 6
drop_duplicates = true
colour = 0.8

[split]
val = 0.25
test = 0.0
group = "none"
seed = 7

[prepare]
size = 24
encoding = "jpg"
"""


def lineage(path) -> dict:
    return json.loads((path / "dataset.json").read_text())["lineage"]["config"]


@pytest.fixture()
def toml(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE)
    return str(path)


def test_one_file_configures_each_stage_and_flags_win(fixture_ds, toml, tmp_path):
    cur, spl, prep = tmp_path / "c", tmp_path / "s", tmp_path / "p"
    assert main(["curate", fixture_ds, "--out", str(cur), "--config", toml, "--hamming", "7", "--processes", "1"]) == 0
    got = lineage(cur)
    assert (got["only"], got["hamming"], got["drop_duplicates"], got["colour"]) == ("duplicates", 7, True, 0.8)
    assert got["min_words"] == CurateConfig().min_words  # untouched keys keep the defaults
    assert main(["split", str(cur), "--out", str(spl), "--config", toml, "--processes", "1"]) == 0
    got = lineage(spl)
    assert (got["val"], got["test"], got["group"], got["seed"]) == (0.25, 0.0, "none", 7)
    assert (
        main(["prepare", str(spl), "--out", str(prep), "--config", toml, "--encoding", "png", "--processes", "1"]) == 0
    )
    got = lineage(prep)
    assert (got["size"], got["encoding"]) == (24, "png")


@pytest.mark.parametrize(
    "text, words",
    [
        ("[curate]\nhaming = 6\n", "--config {path} [curate]: unknown option(s) haming; known: backend, check_leakage"),
        ('[curate]\nhamming = "6"\n', "--config {path} [curate] hamming = '6': must be int"),
        ("[curate]\ndrop_duplicates = 1\n", "--config {path} [curate] drop_duplicates = 1: must be bool"),
        ("[cruate]\nhamming = 6\n", "--config {path}: unknown table(s) cruate; use [curate]"),
        ("[curate\n", "--config {path}: not valid TOML"),
        ("[curate]\nhamming = 40\n", "--hamming 40: choose 0..16 bits"),
    ],
)
def test_bad_config_files_are_one_line_errors(fixture_ds, tmp_path, capsys, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["curate", fixture_ds, "--out", str(tmp_path / "x"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and words.format(path=path) in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_missing_config_file(fixture_ds, tmp_path, capsys):
    assert main(["split", fixture_ds, "--out", str(tmp_path / "x"), "--config", str(tmp_path / "no.toml")]) == 2
    assert f"--config {tmp_path / 'no.toml'}: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, cls",
    [
        (commands.curate_command, CurateConfig),
        (commands.split_command, SplitConfig),
        (prepare_commands.prepare_command, PrepareConfig),
    ],
)
def test_flag_defaults_equal_config_defaults(command, cls):
    """Flags left at their default do not override the file, so they must mean the dataclass default."""
    defaults = cls()
    values = {n: getattr(defaults, n) for n in defaults.__dataclass_fields__ if n != "executor"}
    values.update(dataclasses.asdict(defaults.executor))  # the executor's flags are flat: --processes, --backend
    params = {n: p.default for n, p in inspect.signature(command).parameters.items() if n in values}
    assert set(params) == set(values)
    for name, value in params.items():
        assert value == values[name], name
