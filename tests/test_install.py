"""`pip install pixelforge` (the core, no torch) collects and imports; a command whose extra is missing says which."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pixelforge import extras
from pixelforge.errors import UsageError
from tests.collect.imageserver import ImageServer

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"  # the core's wheels, downloaded by `make install`


def test_every_command_of_an_extra_names_it(monkeypatch):
    monkeypatch.setattr(extras, "_installed", lambda name: name not in ("torch", "pytorch_fid", "fastapi"))
    with pytest.raises(UsageError) as err:
        extras.require_for_command(["--debug", "train", "classifier", "--data", "d", "--out", "r"])
    assert str(err.value) == (
        "`pixelforge train` needs the train extra (torch not installed): pip install 'pixelforge[train]'"
    )
    with pytest.raises(UsageError, match=r"needs the eval extra \(torch and 1 more not installed\)"):
        extras.require_for_command(["evaluate", "--real", "a", "--fake", "b"])
    with pytest.raises(UsageError, match=r"`pixelforge demo` needs the all extra"):
        extras.require_for_command(["demo"])
    for argv in (["train", "classifier", "--help"], ["label"], ["collect", "urls", "l.txt"], ["import", "shapes"], []):
        extras.require_for_command(argv)  # help, a group alone and the core's commands need nothing
    with pytest.raises(
        UsageError, match=r"curate's watermark scores \(q_watermark\) needs the train extra .* or pass --no-watermark"
    ):
        from pixelforge.curate.stage import CurateConfig

        CurateConfig().validate()
    CurateConfig(watermark=False).validate()
    assert (extras.extra_of("torch.nn"), extras.extra_of("ray"), extras.extra_of("numpy")) == ("train", "ray", None)


def test_every_extra_is_declared_in_pyproject():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("train", "eval", "label", "ray", "organise"):
        names = {r.split(">")[0].split("<")[0].split("=")[0].strip().lower().replace("-", "_") for r in declared[extra]}
        dist = {"imwatermark": "invisible_watermark", "c2pa": "c2pa_python", "umap": "umap_learn"}
        assert {dist.get(m, m) for m in extras.EXTRAS[extra]} == names, extra
    assert declared["all"] == ["pixelforge[train,eval,label,ray,organise]"]


@pytest.mark.slow
def test_the_core_installs_alone_and_collects_and_imports(tmp_path):
    with ImageServer() as server:
        _core_install(tmp_path, server)


def _core_install(tmp_path, server):
    if not (WHEELHOUSE / ".." / "core-requirements.txt").exists():
        pytest.skip("the core's wheels are downloaded by `make install` (.venv/wheelhouse)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE)]
    subprocess.run([*pip, str(ROOT)], check=True, capture_output=True, timeout=900)
    py = str(venv / "bin" / "python")
    heavy = "import importlib.util as u; print([m for m in ('torch', 'diffusers', 'ray') if u.find_spec(m)])"
    assert subprocess.run([py, "-c", heavy], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    cli = str(venv / "bin" / "pixelforge")

    def run(*args):
        return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)

    urls = tmp_path / "urls.txt"
    urls.write_text("".join(server.url(f"/img/{i}.jpg") + "\n" for i in range(5)) + server.url("/status/404") + "\n")
    got = run("collect", "urls", str(urls), "--out", "web", "--allow-private-networks", "--image-size", "32", "--json")
    assert got.returncode == 0, got.stderr
    result = json.loads(got.stdout)
    assert (result["samples"], result["failures"], result["failure_reasons"]) == (5, 1, {"http_4xx": 1})
    got = run("import", "shapes", "--out", "shapes", "--n", "12", "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["samples"] == 12, got.stderr
    got = run("query", "shapes", "SELECT count(*) AS n FROM samples", "--format", "json")
    assert got.returncode == 0 and json.loads(got.stdout) == [{"n": 12}], got.stderr
    got = run("train", "classifier", "--data", "shapes", "--out", "run")
    assert got.returncode == 2
    assert got.stderr.strip() == (
        "Error: `pixelforge train` needs the train extra (torch and 9 more not installed): "
        "pip install 'pixelforge[train]'"
    )
