"""The HTML report."""

from poccheck.report.render import REPORT_NAME, render, render_explain

__all__ = ["REPORT_NAME", "render", "render_explain"]
