"""The HTML report."""

from poccheck.report.render import REPORT_NAME, ReportContent, render, render_explain

__all__ = ["REPORT_NAME", "ReportContent", "render", "render_explain"]
