"""Render findings into one self-contained HTML file from the Jinja2 templates in ``templates/``.

Autoescaping is on: task text and model output are untrusted and always appear as inert text.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from poccheck.analysis.deployment import CostFindings
from poccheck.analysis.finetune import FinetuneFindings
from poccheck.analysis.reasoning import Reasoning
from poccheck.analysis.recommend import Recommendation
from poccheck.analysis.stats import Proportion
from poccheck.analysis.summary import Findings
from poccheck.i18n import DASH, DEFAULT_LANGUAGE, Message, Translator
from poccheck.report.charts import accuracy_chart, cascade_chart, latency_chart, scaling_chart
from poccheck.version import __version__

REPORT_NAME = "report.html"
ENGLISH = Translator("en")


def templates_dir() -> Path:
    """``poccheck/templates`` in an installed wheel, or ``templates/`` beside the package in a checkout."""
    packaged = resources.files("poccheck").joinpath("templates")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "templates"


def environment(translator: Translator | None = None) -> jinja2.Environment:
    """The Jinja2 environment, with filters that format numbers for ``translator``'s language and currency."""
    t = translator or Translator()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=t.percent,
        pct0=lambda v: t.percent(v, digits=0),
        ci=lambda p: ci(p, t),
        seconds=t.seconds,
        size=t.bytes,
        count=t.count,
        params=t.parameters,
        rate=lambda v: t.decimal(v, 1),
        dec1=lambda v: t.decimal(v, 1),
        dec2=lambda v: t.decimal(v, 2),
        sig=lambda v: f"{v:.2g}",
        money=t.money,
        say=lambda m: Markup(t.text(m, html=True)),
        say_all=lambda ms: _join(t, "common.list_separator", ms),
        say_sentences=lambda ms: _join(t, "common.sentence_separator", ms),
        deployment=lambda option: deployment_label(t, option.deployment, option.escalated_share),
        deployment_mode=lambda mode: deployment_label(t, mode),
        provenance=lambda what: provenance_label(t, what),
        cascade_chart=lambda cascade: cascade_chart(cascade, t),
        scaling_chart=lambda group, target: scaling_chart(group, target, t),
    )
    env.globals.update(t=t)
    return env


@dataclass(frozen=True)
class ReportContent:
    """What one report shows: the findings and everything analysed from them, and how the page is to be shown."""

    findings: Findings
    reasoning: Reasoning | None = None
    costs: CostFindings | None = None
    advice: Recommendation | None = None
    finetune: tuple[FinetuneFindings, ...] = ()
    decision_problem: str | None = None  # why no decision could be made (the plan's workload gives none, ...)
    host: Mapping[str, Any] = field(default_factory=dict)  # the machine the measurements were made on
    engine: Mapping[str, Any] = field(default_factory=dict)  # the engines' versions and build
    title: str | None = None
    redact: bool = False  # item ids in place of item text and model output


def _join(t: Translator, separator: str, messages: Sequence[Message]) -> Markup:
    return Markup(t.template(separator)).join(Markup(t.text(m, html=True)) for m in messages)


def ci(p: Proportion | None, t: Translator = ENGLISH) -> str:
    """A proportion with its 95% interval and sample size: 25.0% [15–38] (n=52)."""
    if p is None or not p.n:
        return DASH
    return t.template("format.ci").format(
        value=t.percent(p.value), low=t.percent(p.low, 0).rstrip("%"), high=t.percent(p.high, 0), n=t.integer(p.n)
    )


def deployment_label(t: Translator, mode: str, share: float | None = None) -> Markup:
    """A deployment mode's name: own servers and cascades from the catalog, cloud APIs by their model name."""
    if mode.startswith("cloud:"):
        return t("deployment.cloud", name=mode.removeprefix("cloud:"))
    return t(f"deployment.{mode}", share=t.percent(share, 0) if share is not None else None)


def provenance_label(t: Translator, what: str) -> Markup:
    if what.startswith("cloud:"):
        return t("provenance.cloud", name=what.removeprefix("cloud:"))
    return t(f"provenance.{what}") if t.has(f"provenance.{what}") else Markup.escape(what)


def report_file(language: str, primary: bool) -> str:
    """``report.html`` for the first language asked for, ``report.<lang>.html`` for the others."""
    return REPORT_NAME if primary else f"report.{language}.html"


def render(content: ReportContent, out_dir: Path, languages: Sequence[str] = (DEFAULT_LANGUAGE,)) -> Path:
    """Write the report into ``out_dir`` in each of ``languages`` and return the first one's path
    (``report.html``; the others are ``report.<lang>.html``)."""
    paths = []
    for index, language in enumerate(dict.fromkeys(languages)):
        t = Translator(language, content.costs.currency if content.costs else "USD")
        path = out_dir / report_file(language, primary=index == 0)
        _write_private(path, _page(t, content))
        paths.append(path)
    return paths[0]


def _page(t: Translator, content: ReportContent) -> str:
    findings = content.findings
    return (
        environment(t)
        .get_template("report.html.j2")
        .render(
            title=content.title,
            findings=findings,
            generated=t.datetime(_dt.datetime.now().astimezone()),
            version=__version__,
            accuracy_svg=accuracy_chart(findings.models, t),
            latency_svg=latency_chart(findings.models, t),
            redact=content.redact,
            host=content.host,
            engine=content.engine,
            reasoning=content.reasoning,
            costs=content.costs,
            advice=content.advice,
            finetune=list(content.finetune),
            decision_problem=content.decision_problem,
        )
    )


def render_explain(out_file: Path, language: str = DEFAULT_LANGUAGE, **context: Any) -> Path:
    """Write the standalone attention page of ``poccheck explain``."""
    t = Translator(language)
    page = (
        environment(t)
        .get_template("explain.html.j2")
        .render(generated=t.datetime(_dt.datetime.now().astimezone()), version=__version__, **context)
    )
    _write_private(out_file, page)
    return out_file


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp from an earlier crash keeps its own mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
