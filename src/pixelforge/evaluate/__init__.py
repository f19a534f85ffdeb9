"""The evaluate stage: FID, KID, Inception Score, precision/recall, conditional accuracy and memorisation."""

from __future__ import annotations

import importlib
from typing import Any

# Public names and their modules, imported on first use: the CLI imports this package for every
# command, and torch (which these modules need) costs seconds to import.
_EXPORTS = {
    "ConditionalConfig": "conditional",
    "ConditionalResult": "conditional",
    "evaluate_conditional": "conditional",
    "ClassifierFeatures": "features",
    "FeatureModel": "features",
    "load_feature_model": "features",
    "MemorizationConfig": "memorization",
    "MemorizationResult": "memorization",
    "find_memorized": "memorization",
    "EvaluateConfig": "quality",
    "EvaluateResult": "quality",
    "evaluate": "quality",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pixelforge.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pixelforge.evaluate.{_EXPORTS[name]}"), name)
