"""The HTML report: tables and plots from the files the other stages wrote, in one self-contained page."""

__all__ = ["ReportConfig", "ReportResult", "build_report"]


def __getattr__(name: str):
    # rendering pulls in the store, pyarrow and jinja: load it only when asked, so registering the
    # `report` command keeps `pixelforge --help` fast
    if name in __all__:
        from pixelforge.report import render

        return getattr(render, name)
    raise AttributeError(f"module 'pixelforge.report' has no attribute {name!r}")
