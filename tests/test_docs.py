"""Docs that cannot lie: every `pixelforge ...` line in README.md and docs/ parses with the CLI's own
parser, and the README's quick start runs end to end on a tiny folder of images."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

try:  # Typer vendors its own click: its commands raise its UsageError, not click's
    from typer._click.exceptions import UsageError
except ImportError:  # a Typer that uses click itself
    from click.exceptions import UsageError

from pixelforge.cli import app, main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def command_lines(text: str) -> list[str]:
    """The `pixelforge ...` command lines of the shell blocks of a Markdown text (continuations joined)."""
    lines = []
    for lang, body in FENCE.findall(text):
        if lang not in ("sh", "bash", "console", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "pixelforge" in words and (words[0] == "pixelforge" or words[0] == "torchrun"):
                words = words[words.index("pixelforge") + 1 :]
                lines.append(" ".join(shlex.quote(w) for w in words if w != "&"))
    return lines


@functools.cache
def root_command():
    return typer.main.get_command(app)


def parse(args: list[str]) -> None:
    """Parse ``args`` as `pixelforge ARGS` down to the sub-command, running nothing.

    Raises UsageError for an unknown command or option, a missing argument or a bad value.
    """
    cmd = root_command()
    ctx = cmd.make_context("pixelforge", list(args), resilient_parsing=False)
    while hasattr(cmd, "resolve_command"):  # a group: on to the sub-command
        rest = [*ctx._protected_args, *ctx.args]
        if not rest and cmd.invoke_without_command:  # a group that runs by itself (`evaluate`)
            return
        name, cmd, sub_args = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, sub_args, parent=ctx, resilient_parsing=False)


def documented() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), line) for p in DOCS for line in command_lines(p.read_text())]


def test_docs_hold_command_lines_of_every_page():
    pages = {page for page, _ in documented()}
    for page in ("README.md", "docs/get-data.md", "docs/curate.md", "docs/train.md", "docs/evaluate.md"):
        assert page in pages, f"{page} shows no pixelforge command"
    assert len(documented()) >= 80


@pytest.mark.parametrize("page,line", documented(), ids=lambda v: v[:60] if isinstance(v, str) else v)
def test_every_documented_command_line_parses(page, line):
    try:
        parse(shlex.split(line))
    except UsageError as exc:
        pytest.fail(f"{page}: `pixelforge {line}`: {exc.format_message()}")


@pytest.mark.parametrize(
    "line",
    [
        "curate data/a --out data/b --no-such-flag",  # a renamed option
        "curatee data/a --out data/b",  # a renamed command
        "train diffusion --data d --out r --condition text --max-minutes",  # an option without its value
        "import shapes --n many --out d",  # a value of the wrong type
    ],
)
def test_the_parser_check_fails_on_a_wrong_line(line):
    with pytest.raises(UsageError):
        parse(shlex.split(line))


def test_command_lines_joins_continuations_and_drops_comments():
    text = (
        "```sh\npixelforge curate a --out b \\\n    --min-side 64   # note\nmake demo\n```\n"
        "```text\npixelforge x\n```\n"
    )
    assert command_lines(text) == ["curate a --out b --min-side 64"]


def _tiny_captioned_folder(root: Path, n: int = 30) -> None:
    """``n`` 32 px images of a coloured square on a background, each with a caption stating it."""
    colours = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n):
        name = list(colours)[i % 3]
        pixels = np.full((32, 32, 3), 235, np.uint8)
        x, y = rng.integers(2, 16, size=2)
        pixels[y : y + 14, x : x + 14] = colours[name]
        pixels = np.clip(pixels.astype(int) + rng.integers(-6, 7, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i:03d}.png")
        (root / f"img{i:03d}.txt").write_text(f"a {name} square on a white background")


@pytest.mark.slow
def test_readme_quick_start_runs_end_to_end(tmp_path, monkeypatch):
    """The quick start's commands as the README writes them, on 30 tiny images and 2 training steps."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start on your own images", 1)[1].split("\n## ", 1)[0]
    lines = command_lines(section)
    assert [shlex.split(line)[0] for line in lines] == [
        "curate", "audit", "split", "train", "generate", "evaluate", "report",
    ]  # fmt: skip
    images = tmp_path / "my-images"
    _tiny_captioned_folder(images)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        args = [str(images) if a == "~/my-images" else a for a in shlex.split(line)]
        if args[:2] == ["train", "diffusion"]:  # the budget: 2 steps instead of 20 minutes
            i = args.index("--max-minutes")
            args[i : i + 2] = ["--max-steps", "2", "--eval-every", "2", "--sample-steps", "2"]
        if args[0] == "generate":
            args += ["--steps", "2"]
        assert main(args) == 0, f"`pixelforge {line}` failed"
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert len(list((tmp_path / "gen/mine/images").glob("*.png"))) == 8
