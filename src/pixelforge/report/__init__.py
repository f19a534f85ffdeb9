"""The HTML report: tables and plots from the files the other stages wrote, in one self-contained page."""

from pixelforge.report.render import ReportConfig, ReportResult, build_report

__all__ = ["ReportConfig", "ReportResult", "build_report"]
