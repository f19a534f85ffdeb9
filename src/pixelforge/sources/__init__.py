"""Importers of curated datasets; IMPORTERS maps each `pixelforge import KIND` to its Source class."""

from __future__ import annotations

import importlib
from typing import Any

from pixelforge.errors import UsageError

# kind -> "module:Class"; loaded on use so `import coco` never pays for scikit-learn and so on
IMPORTERS: dict[str, str] = {
    "imagefolder": "pixelforge.sources.folders:ImageFolderSource",
    "folder": "pixelforge.sources.folders:FolderSource",
    "coco": "pixelforge.sources.coco:CocoSource",
    "cifar10": "pixelforge.sources.cifar:CifarSource",
    "cifar100": "pixelforge.sources.cifar:CifarSource",
    "mnist": "pixelforge.sources.mnist:MnistSource",
    "digits": "pixelforge.sources.digits:DigitsSource",
    "shapes": "pixelforge.sources.shapes:ShapesSource",
}


def make_source(kind: str, **config: Any):
    """The Source for ``pixelforge import KIND`` built from its config fields."""
    if kind not in IMPORTERS:
        raise UsageError(f"import kind {kind!r}: choose one of {', '.join(IMPORTERS)}")
    module, cls = IMPORTERS[kind].split(":")
    source_cls = getattr(importlib.import_module(module), cls)
    if kind in ("cifar10", "cifar100"):
        config.setdefault("variant", kind)
    return source_cls(**config)
