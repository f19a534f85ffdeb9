"""End-to-end tests of the CLI: info, query, export, errors, and the README meta-test."""

import json
import re
from pathlib import Path

import pytest
import typer.main

from pixelforge.cli import app, main
from pixelforge.store import Dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "shapes"
    assert main(["import", "shapes", "--n", "60", "--size", "16", "--seed", "3", "--out", str(out)]) == 0
    return str(out)


def test_info_json(shapes, capsys):
    capsys.readouterr()
    assert main(["info", shapes, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 60 and info["failures"] == 0 and info["with_caption"] == 60
    assert info["distinct_labels"] == 6 and sorted(info["labels"].values()) == [10] * 6
    assert info["source_kinds"] == {"shapes": 60} and info["formats"] == {"png": 60}
    assert info["width"] == {"min": 16, "median": 16, "max": 16}
    assert info["disk_bytes"] > 0 and info["command"] == "import shapes"


def test_info_table(shapes, capsys):
    capsys.readouterr()
    assert main(["info", shapes]) == 0
    out = capsys.readouterr().out
    assert "samples" in out and "60" in out and "shapes: 60" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_query_formats(shapes, capsys, fmt):
    capsys.readouterr()
    sql = "SELECT label_name, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1"
    assert main(["query", shapes, sql, "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        rows = json.loads(out)
        assert len(rows) == 6 and all(r["n"] == 10 for r in rows)
    elif fmt == "csv":
        lines = out.strip().splitlines()
        assert lines[0] == '"label_name","n"' and len(lines) == 7
    else:
        assert "6 rows" in out


def test_query_csv_writes_nested_columns_as_json(shapes, capsys):
    import csv
    import io

    capsys.readouterr()
    assert (
        main(
            [
                "query",
                shapes,
                "SELECT key, boxes, [label, 7] AS pair FROM samples ORDER BY key LIMIT 2",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in rows] == ["000000000", "000000001"]
    boxes = json.loads(rows[0]["boxes"])
    assert isinstance(boxes, list) and len(boxes) >= 1 and set(boxes[0]) == {"x0", "y0", "x1", "y1", "label"}
    assert json.loads(rows[1]["pair"])[1] == 7


def test_query_errors(shapes, capsys):
    assert main(["query", shapes, "SELECT nope FROM samples"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: query failed:") and "has columns: key, shard" in err and err.count("\n") == 1
    assert main(["query", shapes, "SELECT 1", "--format", "xml"]) == 2
    assert "--format 'xml': choose one of table, csv, json" in capsys.readouterr().err


def test_export_imagefolder_roundtrip(shapes, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", shapes, "--format", "imagefolder", "--out", str(out)]) == 0
    classes = sorted(p.name for p in out.iterdir())
    assert len(classes) == 6 and all(len(list((out / c).iterdir())) == 10 for c in classes)
    # and back in through the imagefolder importer: same labels, same pixels
    assert main(["import", "imagefolder", str(out), "--out", str(tmp_path / "back")]) == 0
    back = Dataset.open(str(tmp_path / "back"))
    orig = Dataset.open(shapes)
    assert sorted(back.index().column("sha256").to_pylist()) == sorted(orig.index().column("sha256").to_pylist())
    assert main(["export", shapes, "--format", "imagefolder", "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_export_coco_roundtrip(tmp_path):
    src = tmp_path / "digits"
    assert main(["import", "digits", "--out", str(src)]) == 0
    out = tmp_path / "coco"
    assert main(["export", str(src), "--format", "coco", "--out", str(out)]) == 0
    doc = json.loads((out / "instances.json").read_text())
    assert len(doc["images"]) == 1797 and len(doc["annotations"]) == 1797
    assert [c["name"] for c in doc["categories"]] == [str(i) for i in range(10)]
    assert doc["annotations"][0]["bbox"] == [0, 0, 8, 8]
    assert (
        main(
            [
                "import",
                "coco",
                "--images",
                str(out / "images"),
                "--annotations",
                str(out / "instances.json"),
                "--out",
                str(tmp_path / "back"),
            ]
        )
        == 0
    )
    back = Dataset.open(str(tmp_path / "back"))
    assert back.num_samples == 1797 and back.index().column("boxes")[0].as_py()[0]["label"] == 0


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["import", "shapes", "--size", "4", "--out", str(tmp_path / "s")]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["import", "imagefolder", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["import", "coco", "--out", str(tmp_path / "o")]) == 2  # missing required option: click's exit 2


def test_import_refuses_existing_output(shapes, capsys):
    assert main(["import", "shapes", "--n", "6", "--out", shapes]) == 2
    assert "already holds a finished dataset" in capsys.readouterr().err


def _commands():
    """Every leaf command as its full name, e.g. 'import shapes', 'collect urls', 'info'."""
    names = []

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                names.append((f"{prefix}{name}", cmd))

    walk(typer.main.get_command(app), "")
    return names


def test_every_command_has_help_example_and_readme_entry():
    readme = (ROOT / "README.md").read_text()
    commands = _commands()
    assert len(commands) >= 12
    for name, cmd in commands:
        assert cmd.help and "Example" in cmd.help, f"{name} has no Example in its help"
        example = re.search(r"pixelforge " + re.escape(name) + r"\b", readme)
        assert example, f"README has no example of `pixelforge {name}`"


def test_collect_flag_defaults_equal_config_defaults():
    """`collect urls` declares its defaults beside the options (fast --help); they must be CollectConfig's."""
    import dataclasses
    import inspect

    from pixelforge.collect.commands import urls_command
    from pixelforge.collect.config import CollectConfig

    defaults = CollectConfig()
    values = {n: getattr(defaults, n) for n in defaults.__dataclass_fields__ if n != "executor"}
    values.update(dataclasses.asdict(defaults.executor))
    values.update(user_agent=None, caption_col="caption", keep_cols="")  # None: the default agent; "" : no columns
    params = {n: p.default for n, p in inspect.signature(urls_command).parameters.items() if n in values}
    assert params == values


def test_help_lists_commands_in_pipeline_order():
    from pixelforge.options import PANELS

    group = typer.main.get_command(app)
    panels = [group.commands[name].rich_help_panel for name in group.list_commands(None)]
    assert all(panels) and sorted(set(panels), key=panels.index) == list(PANELS)
    assert sorted(panels, key=PANELS.index) == panels
