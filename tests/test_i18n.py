"""The report's message catalogs: both languages complete and consistent, every key the code uses present, numbers
formatted for the locale, values escaped, and a full report rendered in each language with nothing left in English
where Japanese was asked for."""

from __future__ import annotations

import functools
import html
import re
import string
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poccheck.analysis import reasoning as reasoning_module
from poccheck.analysis import scaling
from poccheck.analysis.deployment import cost_findings
from poccheck.analysis.finetune import FinetuneFindings
from poccheck.analysis.reasoning import Paired, analyse_reasoning, scaling_groups
from poccheck.analysis.recommend import recommend
from poccheck.analysis.stats import mcnemar_exact, wilson
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.config.plan import Plan, PlanWorkload, Targets
from poccheck.i18n import DASH, LANGUAGES, CatalogError, Message, Translator, catalog
from poccheck.records import ITEM_TYPES, MODES, Grade, ModelInfo, TaskItem
from poccheck.report import ReportContent, render

from .rows import stored_result

ROOT = Path(__file__).resolve().parents[1]
# keys built at run time from a prefix and a closed set of names
DYNAMIC = {
    "mode.": MODES,
    "item_type.": ITEM_TYPES,
    "run_status.": ("running", "finished", "interrupted", "failed"),
    "deployment.": ("onprem_cpu", "onprem_gpu", "cascade", "cloud"),
    "provenance.": ("onprem_cpu", "onprem_gpu", "electricity_price_per_kwh", "exchange_rates", "cloud"),
    "sensitivity.": tuple(
        f"{case}.{end}" for case in ("workload_10x", "hardware_half") for end in ("none", "same", "other")
    ),
    "proof.": ("reached", "not_reached", "reached_invalid", "not_reached_invalid"),
    "notes.": ("does_not_fit", "gpu_does_not_fit"),
}
KEY_PATTERNS = (
    r"""\bt\(\s*["']([a-z_][a-z0-9_.]*)["']""",  # templates: t("key", ...)
    r"""\bt\(\s*["']([a-z_][a-z0-9_.]*)["']\s+if""",  # t("a" if x else "b")
    r"""else\s+["']([a-z_]+\.[a-z0-9_.]+)["']""",
    r"""\.template\(\s*["']([a-z_][a-z0-9_.]*)["']""",
    r"""Message\.of\(\s*["']([a-z_][a-z0-9_.]*)["']""",
)


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def forms(entry: str | dict[str, str]) -> list[str]:
    return list(entry.values()) if isinstance(entry, dict) else [entry]


def used_keys() -> set[str]:
    sources = [*ROOT.joinpath("templates").glob("*.j2"), *ROOT.joinpath("poccheck").rglob("*.py")]
    keys: set[str] = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for pattern in KEY_PATTERNS:
            keys.update(re.findall(pattern, text))
    prefixes = {k for k in keys if k.endswith(".")}  # t("mode." ~ m.mode): a family listed in DYNAMIC
    assert prefixes <= set(DYNAMIC), f"dynamic keys without a list of names in DYNAMIC: {prefixes - set(DYNAMIC)}"
    return (keys - prefixes) | {prefix + name for prefix, names in DYNAMIC.items() for name in names}


def test_both_catalogs_have_the_same_keys_and_placeholders() -> None:
    en, ja = catalog("en"), catalog("ja")
    assert set(en) == set(ja), f"only in en: {set(en) - set(ja)}; only in ja: {set(ja) - set(en)}"
    for key in en:
        en_fields = set().union(*(fields(f) for f in forms(en[key])))
        ja_fields = set().union(*(fields(f) for f in forms(ja[key])))
        assert en_fields - {"count"} == ja_fields - {"count"}, key
        if isinstance(en[key], dict):
            assert {"one", "other"} <= set(en[key]), f"{key}: English plurals need one and other"
            assert isinstance(ja[key], dict) and "other" in ja[key], f"{key}: Japanese needs the other form"
        for text in forms(ja[key]):
            assert text.strip() or key == "common.gap", f"{key}: empty Japanese text"


def test_every_key_the_code_uses_is_in_the_catalogs_and_every_catalog_key_is_used() -> None:
    keys = used_keys()
    entries = catalog("en")
    missing = sorted(k for k in keys if k not in entries)
    assert not missing, f"keys used but missing from the catalogs: {missing}"
    unused = sorted(k for k in entries if k not in keys and not k.startswith(("units.", "format.", "common.")))
    assert not unused, f"catalog keys nothing uses: {unused}"


def test_a_missing_key_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(CatalogError, match="no.such.key"):
        Translator("ja")("no.such.key")


@pytest.mark.parametrize(
    ("language", "currency", "money", "percent", "seconds", "millis"),
    [
        ("en", "USD", "$12.50", "25.3%", "1.50 s", "250 ms"),
        ("ja", "JPY", "￥1,235", "25.3%", "1.50 秒", "250 ミリ秒"),
        ("en", "JPY", "¥123,457", "25.3%", "1.50 s", "250 ms"),
    ],
)
def test_numbers_money_and_units_follow_the_locale(
    language: str, currency: str, money: str, percent: str, seconds: str, millis: str
) -> None:
    t = Translator(language, currency)
    amount = 12.5 if currency == "USD" else (1234.6 if language == "ja" else 123456.7)
    assert t.money(amount) == money
    assert t.percent(0.2534) == percent
    assert t.seconds(1.5) == seconds and t.seconds(0.25) == millis
    assert t.count(270_000_000) == "270M" and t.count(1_600_000_000) == "1.60B" and t.count(1234) == "1,234"


# Every formatter, as the report's templates and catalogs call it.
FORMATTERS: dict[str, Callable[[Translator, Any], str]] = {
    "number": Translator.number,
    "scientific": Translator.scientific,
    "integer": Translator.integer,
    "dec1": lambda t, v: t.decimal(v, 1),
    "dec2": lambda t, v: t.decimal(v, 2),
    "pct": Translator.percent,
    "pct0": lambda t, v: t.percent(v, digits=0),
    "money": Translator.money,
    "seconds": Translator.seconds,
    "bytes": Translator.bytes,
    "params": Translator.parameters,
    "count": Translator.count,
    "no spec": Translator.format_value,
}
ANY_NUMBER = st.one_of(
    st.floats(),  # NaN, ±inf, ±0.0, subnormals, 1.8e308
    st.integers(),
    st.integers(min_value=10**15 - 10, max_value=10**5000),  # past float range and the int-to-str digit limit
    st.integers(min_value=-(10**5000), max_value=-(10**300)),
    st.sampled_from([Decimal("1E-999999"), Decimal("-0.0005"), Decimal("999999999999999.9995")]),
)


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(ANY_NUMBER, st.sampled_from(LANGUAGES), st.sampled_from(["USD", "JPY", "EUR"]))
def test_every_number_formatter_gives_short_text_for_any_number(value: Any, language: str, currency: str) -> None:
    t = Translator(language, currency)
    for name, show in FORMATTERS.items():
        text = show(t, value)
        assert isinstance(text, str) and text.strip(), name
        assert len(text) <= 32, (name, text)  # never thousands of digits
        assert not re.fullmatch(r"-\D*0(?:\.0+)?\D*", text), (name, text)  # no negative zero: "-0", "-$0.00"
    detail = Message.of("grade.expected_got_number", want=value, got=value)
    assert t.text(detail, html=True).count(t.number(value)) == 2


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1.2e46, "1.2E46"),  # what "1,200,000,000,000,000,000,000,000,000,000,000,000,000,000,000,0" parses to
        (10**400, "1E400"),
        (-(10**5000), "-1E5000"),
        (1e15, "1E15"),
        (999_999_999_999_999, "999,999,999,999,999"),
        (1234.5678, "1,234.568"),
        (1e-300, "1E-300"),
        (0.0001, "1E-4"),
        (-0.0, "0"),
        (float("inf"), "∞"),
        (float("-inf"), "-∞"),
        (float("nan"), DASH),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,  # str(10**5000) would hit the int-to-str limit
)
def test_a_number_a_model_wrote_reads_well_in_both_languages(value: float, shown: str) -> None:
    assert Translator("en").number(value) == Translator("ja").number(value) == shown


def test_measurements_beyond_a_sane_magnitude_are_in_scientific_notation() -> None:
    en, ja = Translator("en"), Translator("ja", "JPY")
    assert en.integer(1e300) == en.decimal(1e300, 2) == "1E300" and en.decimal(-0.001, 2) == "0.00"
    assert en.money(1e300) == "$1E300" and ja.money(1e300) == "￥1E300" and en.money(-0.001) == "$0.00"
    assert en.percent(1e300) == "1E302%" and en.percent(-0.0001) == "0.0%"
    assert en.seconds(1e300) == "1E300 s" and ja.seconds(1e300) == "1E300 秒"
    assert en.bytes(2**100) == "1.153E18 TiB" and en.parameters(10**400) == "1E391B" and en.count(10**400) == "1E391B"
    for show in FORMATTERS.values():  # infinity is no measurement: a dash, as NaN and None are
        if show not in (Translator.number, Translator.scientific, Translator.format_value):
            assert show(en, float("inf")) == show(en, float("nan")) == show(en, None) == DASH


def test_plurals_follow_each_languages_rules() -> None:
    en, ja = Translator("en"), Translator("ja")
    assert str(en("report.items", count=1, n="1")) == "1 item"
    assert str(en("report.items", count=2, n="2")) == "2 items"
    assert str(ja("report.items", count=1, n="1")) == "設問 1 件"
    assert str(Message.of("verdict.too_few_sizes", count=1, needed=3)) == (
        "insufficient evidence: 1 model size; at least 3 are needed"
    )
    assert str(en("probe.group_hops", group="deduction", count=2)) == "deduction (2 steps)"
    assert str(ja("probe.group_hops", group="deduction", count=2)) == "deduction（2 段）"


def test_threshold_groups_by_proof_depth_are_named_by_the_catalog_not_the_analysis() -> None:
    findings, _ = _assessment()
    groups = {(g.name, g.hops) for g in scaling_groups(findings, with_published=False)}
    assert {("deduction", 1), ("deduction", 2), ("deduction", None), ("rules", None)} <= groups
    assert all("hop" not in name for name, _ in groups)


def test_values_are_escaped_but_catalog_markup_is_kept() -> None:
    page = str(Translator("en")("summary.best", model="<script>alert(1)</script>", accuracy="50%"))
    assert "<script>" not in page and "&lt;script&gt;" in page and "<strong>" in page
    nested = Message.of("why_not.below_target", group="<b>x</b>", points=5.0)
    assert "&lt;b&gt;" in Translator("ja").text(nested, html=True)
    assert Translator("en").text(nested) == "below target on <b>x</b> by 5.0 points"  # plain text for the console


# ---- a whole report in each language ------------------------------------------------------------------------


def _model(name: str, family: str, parameters: int, mode: str, right: int, n: int = 40) -> ModelFindings:
    info = ModelInfo(name, "llama.cpp", f"/m/{name}.gguf", f"fp-{name}", parameters, "Q4_K_M", parameters // 2,
                     4096, family, family, 16, 4, 64)  # fmt: skip
    rows = []
    for index in range(n):
        proof = index % 4 == 0
        item = TaskItem(
            id=f"q{index}", input=f"question {index} <b>&</b>", type="proof" if proof else "exact",
            answer="Sam is happy." if proof else "x", category="deduction" if proof else "rules",
            metadata={"rule": "modus_ponens", "hops": 1 + index // 4 % 2} if proof else {},
        )  # fmt: skip
        correct = index < right
        result = stored_result(
            item,
            latency=0.4 + index / 100,
            ttft=0.1,
            prompt_tokens=200,
            completion_tokens=20,
            finish_reason="length" if index == n - 1 else "stop",
            mean_logprob=-index / n,
            error=None,
        )
        detail = None if correct else Message.of("grade.expected_got", want="x", got="y")
        rows.append(GradedRow(name, "s", item, result, Grade(correct, "y", detail=detail, lenient=correct or proof),
                              mode=mode))  # fmt: skip
    model = ModelFindings(name=name, info=info, error=None, mode=mode, rows=rows, accuracy=wilson(right, n))
    model.multimode = True
    model.by_category = {"rules": wilson(right * 3 // 4, 30), "deduction": wilson(right // 4, 10)}
    model.by_type = {"exact": wilson(right * 3 // 4, 30), "proof": wilson(right // 4, 10)}
    model.latency_p50, model.latency_p95, model.ttft_p50 = 0.5, 0.9, 0.1
    model.tokens_in, model.tokens_out, model.expected_items = 200 * n, 20 * n, n
    model.settings = {"mode": mode}
    return model


def _assessment() -> tuple[Findings, Plan]:
    models = [
        _model(name, "qwen", size, mode, right if mode == "cot" else right - 6)
        for name, size, right in (
            ("q-0.5b", 500_000_000, 14),
            ("q-1.5b", 1_500_000_000, 26),
            ("q-3b", 3_000_000_000, 36),
        )
        for mode in ("fewshot", "cot")
    ]
    failed = ModelFindings(name="broken.gguf", info=None, error="file is truncated <at byte 12>")
    findings = Findings([*models, failed], ["deduction", "rules"], ["s"], 40, [])
    plan = Plan(
        path=Path("p.yaml"), tasks=(), candidates=(), modes=("fewshot", "cot"),
        targets=Targets({"default": 0.5}, p95_latency_seconds=2.0),
        workload=PlanWorkload(tasks_per_day=1000, peak_concurrency=4, hours_per_day=10), currency="JPY",
    )  # fmt: skip
    return findings, plan


def _finetuned() -> FinetuneFindings:
    def pair(group: str | None, before: int, after: int, gained: int, lost: int) -> Paired:
        return Paired(group, wilson(before, 60), wilson(after, 60), 0, mcnemar_exact(lost, gained))

    return FinetuneFindings(
        adapter="probe1", base="q-0.5b", tuned="q-0.5b+lora:probe1", mode="direct",
        heldout=[pair(None, 2, 56, 54, 0), pair("modus_ponens", 1, 9, 8, 0)], control=[pair("csqa", 41, 30, 2, 13)],
        control_suite="csqa", train_items=78, validation_items=12, test_items=60, epochs_run=3,
        stopped="early stopping", train_seconds=1255.0, peak_rss=4 * 2**30,
        hyperparameters={"rank": 16, "alpha": 32, "learning_rate": 5e-4},
        export="transformers backend only (no GGUF export for llama)",
    )  # fmt: skip


def _english_fragments() -> set[str]:
    """Literal English phrases of four words or more in the catalog, to look for in a Japanese page."""
    found = set()
    for entry in catalog("en").values():
        for text in forms(entry):
            for literal, *_ in string.Formatter().parse(html.unescape(re.sub(r"<[^>]+>", " ", text))):
                for phrase in re.split(r"[;:().,\[\]]", literal):
                    words = phrase.split()
                    if len(words) >= 4 and all(w.isascii() for w in words):
                        found.add(" ".join(words))
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_full_report_renders_in_each_language(tmp_path: Path, language: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the page, not the fit, is under test here: 30 bootstrap resamples instead of 300 keep it fast
    monkeypatch.setattr(reasoning_module, "threshold", functools.partial(scaling.threshold, boot=30))
    findings, plan = _assessment()
    costs = cost_findings(findings, plan)
    advice = recommend(findings, plan, costs)
    reasoning = analyse_reasoning(findings, 0.6)
    assert advice.chosen is not None and advice.sensitivity and costs.cascades and reasoning.lifts and reasoning.probe
    content = ReportContent(findings, reasoning, costs, advice, finetune=(_finetuned(),))
    path = render(content, tmp_path, (language,))
    page = path.read_text(encoding="utf-8")
    sections = ("decision", "summary", "costs", "categories", "speed", "reasoning", "finetune", "attention", "failures")
    for section in sections:
        assert f'id="{section}"' in page
    assert f'<html lang="{language}">' in page
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page  # task text stays inert
    assert "{" + "candidate}" not in page and "None" not in re.sub(r"<[^>]+>", "", page)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    if language == "ja":
        assert "￥" in page and "推奨" in page and "思考の連鎖" in page
        assert "deduction（1 段）" in text  # a threshold group by proof depth, named by the catalog
        leaked = sorted(f for f in _english_fragments() if f in text)
        assert not leaked, f"English left in the Japanese report: {leaked[:5]}"
    else:
        assert "Recommendation: run" in page and "¥" in page
        assert "deduction (1 step)" in text


def test_both_languages_are_written_the_first_as_report_html(tmp_path: Path) -> None:
    findings, plan = _assessment()
    costs = cost_findings(findings, plan)
    first = render(
        ReportContent(findings, costs=costs, advice=recommend(findings, plan, costs)), tmp_path, ("ja", "en")
    )
    assert first.name == "report.html" and 'lang="ja"' in first.read_text(encoding="utf-8")
    assert 'lang="en"' in (tmp_path / "report.en.html").read_text(encoding="utf-8")
