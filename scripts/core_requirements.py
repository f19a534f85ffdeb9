"""Print what a fresh venv needs to install pixelforge's core from local wheels: the core
dependencies of pyproject.toml and the build backend (the Makefile downloads them once)."""

import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
for requirement in project["project"]["dependencies"] + project["build-system"]["requires"]:
    print(requirement)
