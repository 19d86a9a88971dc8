"""The HTML report."""

from poccheck.report.render import REPORT_NAME, render

__all__ = ["REPORT_NAME", "render"]
