"""Render findings into one self-contained HTML file from the Jinja2 templates in ``templates/``.

Autoescaping is on: task text and model output are untrusted and always appear as inert text.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from poccheck import __version__
from poccheck.analysis.deployment import CostFindings
from poccheck.analysis.reasoning import Reasoning
from poccheck.analysis.recommend import Recommendation
from poccheck.analysis.stats import Proportion
from poccheck.analysis.summary import Findings
from poccheck.report.charts import accuracy_chart, cascade_chart, latency_chart, scaling_chart

REPORT_NAME = "report.html"


def templates_dir() -> Path:
    """``poccheck/templates`` in an installed wheel, or ``templates/`` beside the package in a checkout."""
    packaged = resources.files("poccheck").joinpath("templates")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, ci=ci, seconds=seconds, size=size, count=count, rate=rate)
    return env


def pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value * 100:.1f}%"


def ci(p: Proportion | None) -> str:
    if p is None or not p.n:
        return "–"
    return f"{p.value * 100:.1f}% [{p.low * 100:.0f}–{p.high * 100:.0f}] (n={p.n})"


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def size(value: int | None) -> str:
    if not value:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return str(value)


def count(value: int | None) -> str:
    if value is None:
        return "–"
    if value >= 1_000_000_000:
        return f"{value / 1e9:.2f}B"
    if value >= 1_000_000:
        return f"{value / 1e6:.0f}M"
    return f"{value:,}"


def money(value: float, currency: str) -> str:
    """Money for the report, formatted by Babel; whole units for yen and for large amounts."""
    from babel.numbers import format_currency

    if not math.isfinite(value):
        return "–"
    if currency == "JPY" or value >= 1000:
        return str(format_currency(round(value), currency, format="¤#,##0", locale="en_US", currency_digits=False))
    return str(format_currency(value, currency, locale="en_US"))


def size_label(parameters: float | None) -> str:
    if not parameters:
        return "–"
    return f"{parameters / 1e9:.2f}B" if parameters >= 1e9 else f"{parameters / 1e6:.0f}M"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def render(
    findings: Findings,
    out_dir: Path,
    title: str = "poccheck assessment",
    redact: bool = False,
    context: dict[str, Any] | None = None,
    reasoning: Reasoning | None = None,
    costs: CostFindings | None = None,
    advice: Recommendation | None = None,
) -> Path:
    """Write ``report.html`` into ``out_dir`` and return its path."""
    page = (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            findings=findings,
            generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            version=__version__,
            accuracy_svg=accuracy_chart(findings.models),
            latency_svg=latency_chart(findings.models),
            redact=redact,
            host=(context or {}).get("host", {}),
            reasoning=reasoning,
            costs=costs,
            advice=advice,
            money=lambda value: money(value, costs.currency if costs else "USD"),
            cascade_chart=lambda c: cascade_chart(c, costs.currency if costs else "USD"),
            scaling_chart=lambda group: scaling_chart(group, reasoning.target if reasoning else None),
            size_label=size_label,
            engine=(context or {}).get("engine", {}),
        )
    )
    path = out_dir / REPORT_NAME
    _write_private(path, page)
    return path


def render_explain(out_file: Path, **context: Any) -> Path:
    """Write the standalone attention page of ``poccheck explain``."""
    page = (
        environment()
        .get_template("explain.html.j2")
        .render(generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), version=__version__, **context)
    )
    _write_private(out_file, page)
    return out_file


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
