"""The curate stage: quality scores, watermark and duplicate detection, caption checks, filters, splits."""

__all__ = ["CurateConfig", "CurateResult", "SplitConfig", "SplitResult", "curate", "split_dataset"]


def __getattr__(name: str):
    # loaded on use: workers import single modules (quality, dedup) without the whole stage
    if name in ("CurateConfig", "CurateResult", "curate"):
        from pixelforge.curate import stage

        return getattr(stage, name)
    if name in ("SplitConfig", "SplitResult", "split_dataset"):
        from pixelforge.curate import split

        return getattr(split, name)
    raise AttributeError(f"module 'pixelforge.curate' has no attribute {name!r}")
