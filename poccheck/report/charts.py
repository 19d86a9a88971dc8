"""Charts as inline SVG (matplotlib, text drawn as paths so the report needs no fonts)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from poccheck.analysis.cascade import Cascade  # noqa: E402
from poccheck.analysis.reasoning import ScalingGroup  # noqa: E402
from poccheck.analysis.stats import wilson  # noqa: E402
from poccheck.analysis.summary import ModelFindings  # noqa: E402

plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "svg.hashsalt": "poccheck"})


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def accuracy_chart(models: list[ModelFindings]) -> str | None:
    """Horizontal bars of accuracy with 95% Wilson intervals, one per model."""
    shown = [m for m in models if m.accuracy.n]
    if not shown:
        return None
    height = 0.6 + 0.45 * len(shown)
    figure, axis = plt.subplots(figsize=(6.5, height))
    labels = [_ascii(m.label) for m in shown]
    values = [m.accuracy.value * 100 for m in shown]
    low = [max(0.0, (m.accuracy.value - m.accuracy.low) * 100) for m in shown]
    high = [max(0.0, (m.accuracy.high - m.accuracy.value) * 100) for m in shown]
    positions = list(range(len(shown)))[::-1]
    axis.barh(positions, values, color="#3b6ea5", height=0.55)
    axis.errorbar(values, positions, xerr=[low, high], fmt="none", ecolor="#222", capsize=4, linewidth=1)
    axis.set_yticks(positions, labels)
    axis.set_xlim(0, 100)
    axis.set_xlabel("accuracy (%) with 95% interval")
    axis.grid(axis="x", color="#ddd")
    axis.set_axisbelow(True)
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def latency_chart(models: list[ModelFindings]) -> str | None:
    """Per-item latency distribution (seconds, log scale) per model."""
    shown = [m for m in models if any(r.grade is not None for r in m.rows)]
    if not shown:
        return None
    data = [[r.result["latency"] for r in m.rows if r.grade is not None] for m in shown]
    figure, axis = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(shown)))
    axis.boxplot(data[::-1], vert=False, widths=0.5, showfliers=True)
    axis.set_yticks(range(1, len(shown) + 1), [_ascii(m.label) for m in shown][::-1])
    if (
        all(v > 0 for series in data for v in series)
        and max(max(s) for s in data) / max(min(min(s) for s in data), 1e-9) > 20
    ):
        axis.set_xscale("log")
    axis.set_xlabel("seconds per item")
    axis.grid(axis="x", color="#ddd")
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def _ascii(text: str) -> str:
    """Chart fonts may lack CJK glyphs; keep labels to printable ASCII, shortened."""
    text = text.replace("·", "-")
    cleaned = "".join(c if 32 <= ord(c) < 127 and c not in "<>&" else "?" for c in text)
    return cleaned if len(cleaned) <= 40 else "..." + cleaned[-37:]


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def scaling_chart(group: ScalingGroup, target: float | None) -> str | None:
    """Accuracy against parameters (log scale): measured points with 95% intervals by family, the fitted
    logistic and its threshold interval, the target, and the published study's points for the same task."""
    fit = group.fit
    if not fit.points and group.published is None:
        return None
    figure, axis = plt.subplots(figsize=(6.8, 3.6))
    grid = None
    if group.published is not None:
        published = group.published
        axis.scatter(
            [p.parameters for p in published.points], [p.accuracy * 100 for p in published.points],
            marker="x", color="#9aa3ad", label="published study", zorder=2,
        )  # fmt: skip
        if published.logistic is not None:
            grid = np.linspace(
                min(p.log_size for p in published.points) - 0.2, max(p.log_size for p in published.points) + 0.2, 200
            )
            axis.plot(
                10**grid, published.logistic(grid) * 100, "--", color="#9aa3ad", linewidth=1, label="published, fitted"
            )
    families = sorted({p.family for p in fit.points})
    palette = ["#3b6ea5", "#d66027", "#2e8b57", "#8e44ad", "#b8860b", "#c0392b"]
    for index, family in enumerate(families):
        pts = [p for p in fit.points if p.family == family]
        cis = [wilson(p.correct, p.n) for p in pts]
        axis.errorbar(
            [p.parameters for p in pts], [p.accuracy * 100 for p in pts],
            yerr=[[max(0.0, (c.value - c.low) * 100) for c in cis], [max(0.0, (c.high - c.value) * 100) for c in cis]],
            fmt="o", color=palette[index % len(palette)], capsize=3, label=_ascii(f"measured: {family}"), zorder=3,
        )  # fmt: skip
    if fit.logistic is not None and fit.sufficient:
        xs = np.linspace(min(p.log_size for p in fit.points) - 0.2, max(p.log_size for p in fit.points) + 0.2, 200)
        axis.plot(10**xs, fit.logistic(xs) * 100, color="#1d2733", linewidth=1.5, label="fitted (logistic)")
    if fit.interval is not None and fit.sufficient:
        axis.axvspan(
            10 ** fit.interval[0], 10 ** fit.interval[1], color="#3b6ea5", alpha=0.12, label="threshold, 95% interval"
        )
    if target is not None:
        axis.axhline(target * 100, color="#b3261e", linewidth=1, linestyle=":", label=f"target {target * 100:.0f}%")
    if group.chance:
        axis.axhline(group.chance * 100, color="#6b7785", linewidth=0.8, linestyle="-.", label="chance")
    axis.set_xscale("log")
    axis.set_ylim(-2, 102)
    axis.set_xlabel("parameters")
    axis.set_ylabel("accuracy (%)")
    axis.grid(color="#e5e5e5")
    axis.legend(fontsize=7, loc="upper left", frameon=False)
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)


def cascade_chart(cascade: Cascade, currency: str) -> str:
    """Accuracy against cost per 1,000 tasks as more of the small model's least confident items escalate."""
    figure, axis = plt.subplots(figsize=(6.2, 3.2))
    xs = [p.cost_per_task * 1000 for p in cascade.points]
    ys = [p.accuracy.value * 100 for p in cascade.points]
    low = [max(0.0, (p.accuracy.value - p.accuracy.low) * 100) for p in cascade.points]
    high = [max(0.0, (p.accuracy.high - p.accuracy.value) * 100) for p in cascade.points]
    axis.errorbar(xs, ys, yerr=[low, high], fmt="-o", markersize=3, color="#3b6ea5", ecolor="#b9c7d8", capsize=2)
    axis.annotate("small only", (xs[0], ys[0]), textcoords="offset points", xytext=(4, -12), fontsize=7)
    axis.annotate("all escalated", (xs[-1], ys[-1]), textcoords="offset points", xytext=(-40, 6), fontsize=7)
    if cascade.chosen is not None:
        axis.scatter([cascade.chosen.cost_per_task * 1000], [cascade.chosen.accuracy.value * 100], s=80,
                     facecolors="none", edgecolors="#b3261e", linewidths=1.5, zorder=3, label="chosen")  # fmt: skip
    if cascade.target is not None:
        axis.axhline(cascade.target * 100, color="#b3261e", linewidth=1, linestyle=":", label="target")
    axis.set_xlabel(_ascii(f"cost per 1,000 tasks ({currency})"))
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(-2, 102)
    axis.grid(color="#e5e5e5")
    axis.legend(fontsize=7, frameon=False, loc="lower right")
    for spine in ("top", "right"):
        axis.spines[spine].set_visible(False)
    return _svg(figure)
