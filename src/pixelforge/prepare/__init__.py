"""The prepare stage: uniform resizing, denoising and augmentation (SPEC strings shared with training)."""

from pixelforge.prepare.augment import parse_spec

__all__ = ["PrepareConfig", "PrepareResult", "parse_spec", "prepare"]


def __getattr__(name: str):
    # the stage pulls in the store and the executor: load it only when asked, so the trainer's
    # `from pixelforge.prepare.augment import parse_spec` stays light
    if name in ("PrepareConfig", "PrepareResult", "prepare"):
        from pixelforge.prepare import stage

        return getattr(stage, name)
    raise AttributeError(f"module 'pixelforge.prepare' has no attribute {name!r}")
