"""Charts as inline SVG (matplotlib). Labels come from the message catalogs and stay SVG text, so the browser draws
them with its own fonts (Japanese included) and the report needs no font files."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from poccheck.analysis.cascade import Cascade  # noqa: E402
from poccheck.analysis.reasoning import ScalingGroup  # noqa: E402
from poccheck.analysis.stats import wilson  # noqa: E402
from poccheck.analysis.summary import ModelFindings  # noqa: E402
from poccheck.i18n import Translator  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "poccheck"})


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with warnings.catch_warnings():  # text metrics come from matplotlib's font, which lacks CJK glyphs; the
        warnings.filterwarnings("ignore", message="Glyph .* missing from")  # browser draws them with its own
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def accuracy_chart(models: list[ModelFindings], t: Translator) -> str | None:
    """Horizontal bars of accuracy with 95% Wilson intervals, one per model."""
    shown = [m for m in models if m.accuracy.n]
    if not shown:
        return None
    height = 0.6 + 0.45 * len(shown)
    figure, axis = plt.subplots(figsize=(6.5, height))
    labels = [_short(m.label) for m in shown]
    values = [m.accuracy.value * 100 for m in shown]
    low = [max(0.0, (m.accuracy.value - m.accuracy.low) * 100) for m in shown]
    high = [max(0.0, (m.accuracy.high - m.accuracy.value) * 100) for m in shown]
    positions = list(range(len(shown)))[::-1]
    axis.barh(positions, values, color="#3b6ea5", height=0.55)
    axis.errorbar(values, positions, xerr=[low, high], fmt="none", ecolor="#222", capsize=4, linewidth=1)
    axis.set_yticks(positions, labels)
    axis.set_xlim(0, 100)
    axis.set_xlabel(t.template("chart.accuracy_axis"))
    axis.grid(axis="x", color="#ddd")
    axis.set_axisbelow(True)
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def latency_chart(models: list[ModelFindings], t: Translator) -> str | None:
    """Per-item latency distribution (seconds, log scale) per model."""
    shown = [m for m in models if any(r.grade is not None for r in m.rows)]
    if not shown:
        return None
    data = [[r.result.latency for r in m.rows if r.grade is not None] for m in shown]
    figure, axis = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(shown)))
    axis.boxplot(data[::-1], vert=False, widths=0.5, showfliers=True)
    axis.set_yticks(range(1, len(shown) + 1), [_short(m.label) for m in shown][::-1])
    if (
        all(v > 0 for series in data for v in series)
        and max(max(s) for s in data) / max(min(min(s) for s in data), 1e-9) > 20
    ):
        axis.set_xscale("log")
        _plain_log_labels(axis, lambda v: f"{v:g}")
    axis.set_xlabel(t.template("chart.seconds_axis"))
    axis.grid(axis="x", color="#ddd")
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def _plain_log_labels(axis: Axes, label: Callable[[float], str]) -> None:
    """Log-axis ticks as plain text (0.5, 2, 270M) rather than mathtext powers, which the browser would lay out
    with its own font metrics and overlap."""
    axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: label(value)))
    axis.xaxis.set_minor_formatter(NullFormatter())


def _short(text: str) -> str:
    """A label without control characters, at most 40 characters (the end kept: it names the file)."""
    cleaned = "".join(c for c in text if c.isprintable()).replace("$", r"\$")  # "$" would start mathtext
    return cleaned if len(cleaned) <= 40 else "…" + cleaned[-39:]


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def scaling_chart(group: ScalingGroup, target: float | None, t: Translator) -> str | None:
    """Accuracy against parameters (log scale): measured points with 95% intervals by family, the fitted
    logistic and its threshold interval, the target, and the published study's points for the same task."""
    fit = group.fit
    if not fit.points and group.published is None:
        return None
    figure, axis = plt.subplots(figsize=(5.6, 3.6))  # the legend beside it makes about 7.2 inches
    grid = None
    if group.published is not None:
        published = group.published
        axis.scatter(
            [p.parameters for p in published.points], [p.accuracy * 100 for p in published.points],
            marker="x", color="#9aa3ad", label=t.template("chart.published"), zorder=2,
        )  # fmt: skip
        if published.logistic is not None:
            grid = np.linspace(
                min(p.log_size for p in published.points) - 0.2, max(p.log_size for p in published.points) + 0.2, 200
            )
            axis.plot(
                10**grid,
                published.logistic(grid) * 100,
                "--",
                color="#9aa3ad",
                linewidth=1,
                label=t.template("chart.published_fitted"),
            )
    families = sorted({p.family for p in fit.points})
    palette = ["#3b6ea5", "#d66027", "#2e8b57", "#8e44ad", "#b8860b", "#c0392b"]
    for index, family in enumerate(families):
        pts = [p for p in fit.points if p.family == family]
        cis = [wilson(p.correct, p.n) for p in pts]
        axis.errorbar(
            [p.parameters for p in pts], [p.accuracy * 100 for p in pts],
            yerr=[[max(0.0, (c.value - c.low) * 100) for c in cis], [max(0.0, (c.high - c.value) * 100) for c in cis]],
            fmt="o", color=palette[index % len(palette)], capsize=3, zorder=3,
            label=t.template("chart.measured").format(family=_short(family)),
        )  # fmt: skip
    if fit.logistic is not None and fit.sufficient:
        xs = np.linspace(min(p.log_size for p in fit.points) - 0.2, max(p.log_size for p in fit.points) + 0.2, 200)
        axis.plot(10**xs, fit.logistic(xs) * 100, color="#1d2733", linewidth=1.5, label=t.template("chart.fitted"))
    if fit.interval is not None and fit.sufficient:
        axis.axvspan(
            10 ** fit.interval[0],
            10 ** fit.interval[1],
            color="#3b6ea5",
            alpha=0.12,
            label=t.template("chart.threshold"),
        )
    if target is not None:
        axis.axhline(
            target * 100,
            color="#b3261e",
            linewidth=1,
            linestyle=":",
            label=t.template("chart.target_at").format(target=t.percent(target, 0)),
        )
    if group.chance:
        axis.axhline(
            group.chance * 100, color="#6b7785", linewidth=0.8, linestyle="-.", label=t.template("chart.chance")
        )
    axis.set_xscale("log")
    _plain_log_labels(axis, t.parameters)
    axis.set_ylim(-2, 102)
    axis.set_xlabel(t.template("chart.parameters"))
    axis.set_ylabel(t.template("chart.accuracy_pct"))
    axis.grid(color="#e5e5e5")
    # beside the axes, not over them: a legend in a corner hides the points and error bars drawn there
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def cascade_chart(cascade: Cascade, t: Translator) -> str:
    """Accuracy against cost per 1,000 tasks as more of the small model's least confident items escalate (in
    sample), with the chosen rule in sample and its cross-validated result."""
    figure, axis = plt.subplots(figsize=(6.2, 3.2))
    xs = [p.per_1000_tasks for p in cascade.points]
    ys = [p.accuracy.value * 100 for p in cascade.points]
    low = [max(0.0, (p.accuracy.value - p.accuracy.low) * 100) for p in cascade.points]
    high = [max(0.0, (p.accuracy.high - p.accuracy.value) * 100) for p in cascade.points]
    axis.errorbar(xs, ys, yerr=[low, high], fmt="-o", markersize=3, color="#3b6ea5", ecolor="#b9c7d8", capsize=2)
    axis.annotate(
        t.template("chart.small_only"), (xs[0], ys[0]), textcoords="offset points", xytext=(4, -12), fontsize=7
    )
    axis.annotate(
        t.template("chart.all_escalated"), (xs[-1], ys[-1]), textcoords="offset points", xytext=(-40, 6), fontsize=7
    )
    if cascade.chosen is not None:
        axis.scatter([cascade.chosen.per_1000_tasks], [cascade.chosen.accuracy.value * 100], s=80,
                     facecolors="none", edgecolors="#b3261e", linewidths=1.5, zorder=3,
                     label=t.template("chart.chosen"))  # fmt: skip
    if cascade.validated is not None:
        axis.scatter([cascade.validated.per_1000_tasks], [cascade.validated.accuracy.value * 100], s=40,
                     marker="D", color="#1b7f3b", zorder=4, label=t.template("chart.validated"))  # fmt: skip
    target = cascade.targets.get("default", min(cascade.targets.values(), default=None))
    if target is not None:
        axis.axhline(target * 100, color="#b3261e", linewidth=1, linestyle=":", label=t.template("chart.target"))
    axis.set_xlabel(t.template("chart.cost_axis").format(currency=t.currency))
    axis.set_ylabel(t.template("chart.accuracy_pct"))
    axis.set_ylim(-2, 102)
    axis.grid(color="#e5e5e5")
    axis.legend(fontsize=7, frameon=False, loc="lower right")
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)
