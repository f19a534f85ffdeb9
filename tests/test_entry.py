"""The `pixelforge` executable (pixelforge.entry): an early fork server for pool commands, exit codes kept."""

import subprocess
import sys

import pytest

from pixelforge.entry import EARLY_POOLS, early_pool


@pytest.mark.parametrize(
    "argv, started",
    [
        (["curate", "data/web", "--out", "x"], True),
        (["curate", "data/web", "--out", "x", "--processes", "4"], True),
        (["curate", "data/web", "--out", "x", "--backend=local"], True),
        (["curate", "data/web", "--out", "x", "--processes", "1"], False),  # runs in this process
        (["curate", "data/web", "--out", "x", "--processes=1"], False),
        (["curate", "data/web", "--out", "x", "--backend", "ray"], False),  # Ray starts its own workers
        (["curate", "--help"], False),
        (["query", "data/web", "SELECT 1"], False),
        ([], False),
        (["collect", "urls", "l.txt", "--out", "x"], True),
        (["collect", "retry", "data/web", "--out", "x", "--processes", "1"], False),
    ],
)
def test_early_pool_only_for_local_pool_commands(argv, started):
    assert early_pool(argv) == (EARLY_POOLS[argv[0]] if started else ())


def test_executable_keeps_exit_codes_and_output(tmp_path):
    run = [sys.executable, "-m", "pixelforge.entry"]
    ok = subprocess.run([*run, "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("pixelforge ")
    bad = subprocess.run(
        [*run, "curate", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"Error: IN {tmp_path / 'nowhere'}: no such dataset or folder; pass a pixelforge dataset or a folder of images"
    ]
