"""Cloud API prices say where and when they were read and whether that page states them; a retired model and an
unconfirmed or old price are marked in the report, in both languages. Every date is passed explicitly."""

from __future__ import annotations

import datetime as dt
import html
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from poccheck.analysis.cost import cloud_deployment
from poccheck.analysis.deployment import CandidateCost, cost_findings
from poccheck.config.costs import CloudPrice, Workload, load_profiles, older_than_six_months, override_problems
from poccheck.config.plan import default_plan_text, parse_plan
from poccheck.errors import PocCheckError
from poccheck.i18n import Translator
from poccheck.report import ReportContent, render
from tests.test_i18n import _assessment

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.date(2026, 12, 3)
WORKLOAD = Workload(tasks_per_day=1000, peak_concurrency=2, input_tokens=200, output_tokens=20)


def shipped_cloud_entries() -> dict[str, dict[str, Any]]:
    text = resources.files("poccheck").joinpath("data/cost_profiles.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(text)["cloud_apis"]
    assert isinstance(entries, dict)
    return entries


# ---------------------------------------------------------------- the shipped prices


def test_every_shipped_price_has_a_source_a_retrieval_date_and_a_confirmed_flag() -> None:
    entries = shipped_cloud_entries()
    assert {"gpt-4o-mini", "gpt-4o"} <= set(entries)
    for name, entry in entries.items():
        assert {"source", "retrieved", "confirmed"} <= set(entry), name  # written out, not left to defaults
        assert isinstance(entry["confirmed"], bool), name
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", entry["retrieved"]), name
        assert "https://" in entry["source"], name
    for name, price in load_profiles().cloud.items():
        assert price.retrieved == entries[name]["retrieved"] and price.confirmed is entries[name]["confirmed"]
        assert price.date == price.retrieved[:7], name  # the provenance table's month is the retrieval month


def test_retired_models_are_marked_and_their_source_says_so() -> None:
    cloud = load_profiles().cloud
    retired = {name for name, price in cloud.items() if price.retired}
    assert retired == {"claude-3-5-haiku", "gemini-1.5-flash"}
    for name in retired:
        assert re.search(r"retired|shut down", cloud[name].source), name
    assert not cloud["gpt-4o-mini"].retired and not cloud["gpt-4o"].retired


def test_no_shipped_price_is_older_than_six_months_on_the_day_it_was_checked() -> None:
    assert not any(price.stale(TODAY) for price in load_profiles().cloud.values())


# ---------------------------------------------------------------- plan overrides


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("retrieved", "yesterday", 'must be a date such as "2026-12-03" or a month such as "2026-12"'),
        ("retrieved", "2026-13", "must be a date such as"),
        ("retrieved", "2026-02-30", "must be a date such as"),  # the shape of a date, but no such day
        ("retrieved", dt.date(2026, 12, 3), 'must be quoted text such as "2026-12-03"'),
        ("retrieved", dt.datetime(2026, 12, 3, 10, 0), "must be a date such as"),  # quoted, it would not do either
        ("retrieved", "2026-12-3", "must be a date such as"),
        ("retrieved", 20261203, 'must be a date such as "2026-12-03" or a month such as "2026-12", not 20261203'),
        ("confirmed", "yes", "must be true or false, not 'yes'"),
        ("confirmed", 1, "must be true or false, not 1"),
        ("retired", "no", "must be true or false, not 'no'"),
    ],
)
def test_a_bad_retrieved_confirmed_or_retired_value_names_the_key(key: str, value: Any, message: str) -> None:
    overrides = {"cloud_apis": {"gpt-4o": {key: value}}}
    with pytest.raises(PocCheckError) as caught:
        load_profiles(overrides)
    assert f"cost_profiles.cloud_apis.gpt-4o.{key}: {message}" in str(caught.value)
    assert [path for path, _ in override_problems(overrides)] == [("cloud_apis", "gpt-4o", key)]


def _plan_with(cost_profiles: str) -> str:
    text = default_plan_text().replace("cost_profiles: {}\n", cost_profiles)
    assert text != default_plan_text()
    return text


def test_a_plan_file_with_a_bad_value_names_the_file_the_line_and_the_key() -> None:
    text = _plan_with(
        'cost_profiles:\n  cloud_apis:\n    gpt-4o:\n      retrieved: 03/12/2026\n      confirmed: "true"\n'
    )
    plan, problems = parse_plan(text, ROOT / "poccheck.yaml")
    assert plan is None
    shown = {p.field: str(p) for p in problems}
    lines = text.splitlines()
    key = "cost_profiles.cloud_apis.gpt-4o.retrieved"
    where = f"poccheck.yaml:{lines.index('      retrieved: 03/12/2026') + 1} [{key}]: "
    assert where + "must be a date such as" in shown[key]
    key = "cost_profiles.cloud_apis.gpt-4o.confirmed"
    line = lines.index('      confirmed: "true"') + 1
    where = f"poccheck.yaml:{line} [{key}]: "
    assert where + "must be true or false, not 'true'" in shown[key]


def test_a_plan_file_gives_the_line_of_each_cost_profile_problem_the_schema_finds() -> None:
    text = _plan_with(
        "cost_profiles:\n  onprem_gpu:\n    gpus: two\n    lifetme_years: 5\n"
        "  cloud_apis:\n    our-api:\n      input_per_million: 1.0\n  exchange_rates:\n    EUR: 0\n"
    )
    plan, problems = parse_plan(text, ROOT / "poccheck.yaml")
    assert plan is None
    lines = text.splitlines()
    assert {p.field: (p.line, p.message) for p in problems} == {
        "cost_profiles.onprem_gpu.gpus": (
            lines.index("    gpus: two") + 1,
            "must be a whole number above 0, not 'two'",
        ),
        "cost_profiles.onprem_gpu.lifetme_years": (
            lines.index("    lifetme_years: 5") + 1,
            "unknown key (did you mean 'lifetime_years'?)",
        ),
        # a key that is not there is shown at the deepest one that is
        "cost_profiles.cloud_apis.our-api.output_per_million": (lines.index("    our-api:") + 1, "missing"),
        "cost_profiles.exchange_rates.EUR": (lines.index("    EUR: 0") + 1, "must be above 0, not 0"),
    }


def test_a_plan_may_write_the_retrieval_date_with_or_without_quotes() -> None:
    for value in ("2026-11-20", '"2026-11-20"'):  # the plan loader keeps an unquoted date as text
        block = f"cost_profiles:\n  cloud_apis:\n    gpt-4o:\n      retrieved: {value}\n      confirmed: true\n"
        plan, problems = parse_plan(_plan_with(block), ROOT / "poccheck.yaml")
        assert problems == [] and plan is not None
        assert plan.profiles().cloud["gpt-4o"].retrieved == "2026-11-20"


def test_a_price_given_in_a_plan_is_unconfirmed_unless_it_says_otherwise() -> None:
    cloud = load_profiles(
        {
            "cloud_apis": {
                "in-house-api": {"input_per_million": 1.0, "output_per_million": 2.0},
                "gpt-4o": {"input_per_million": 2.0},  # a shipped model at the plan's own price
                "vendor-quote": {
                    "input_per_million": 0.5,
                    "output_per_million": 1.5,
                    "date": "2026-11",
                    "retrieved": "2026-11-20",
                    "confirmed": True,
                    "source": "our contract, 2026-11-20",
                },
                "gpt-4o-mini": {"retired": True},  # the price itself stays the shipped one
            }
        }
    ).cloud
    assert (cloud["in-house-api"].confirmed, cloud["in-house-api"].retrieved, cloud["in-house-api"].retired) == (
        False, "", False,
    )  # fmt: skip
    gpt4o = cloud["gpt-4o"]
    assert (gpt4o.input_per_million, gpt4o.confirmed, gpt4o.retrieved, gpt4o.date) == (2.0, False, "", "")
    assert gpt4o.source.startswith("plan override of input_per_million")
    quote = cloud["vendor-quote"]
    assert (quote.confirmed, quote.retrieved, quote.source) == (True, "2026-11-20", "our contract, 2026-11-20")
    mini = cloud["gpt-4o-mini"]
    assert mini.retired and mini.confirmed and mini.retrieved == load_profiles().cloud["gpt-4o-mini"].retrieved


# ---------------------------------------------------------------- age


@pytest.mark.parametrize(
    ("retrieved", "today", "old"),
    [
        ("2026-06-03", TODAY, False),  # exactly six months: not yet older
        ("2026-06-02", TODAY, True),
        ("2025-01-15", TODAY, True),
        ("2026-11-20", TODAY, False),
        ("2026-06", TODAY, False),  # a month counts as its last day: part of June is within six months
        ("2026-05", TODAY, True),
        ("2026-02-28", dt.date(2026, 8, 31), False),  # 31 August - six months = 28 February
        ("2026-02-27", dt.date(2026, 8, 31), True),
        ("2025-12-31", dt.date(2026, 6, 30), False),
        ("", TODAY, False),  # undated: shown as undated, not called old
    ],
)
def test_a_price_is_old_when_retrieved_more_than_six_months_before_the_given_day(
    retrieved: str, today: dt.date, old: bool
) -> None:
    assert older_than_six_months(retrieved, today) is old
    assert CloudPrice("m", 1.0, 2.0, retrieved[:7], "s", retrieved=retrieved).stale(today) is old


def test_the_deployment_notes_warn_about_an_old_price_and_not_a_recent_one() -> None:
    old = CloudPrice("old-api", 1.0, 2.0, "2025-01", "a page", retrieved="2025-01-15", confirmed=True)
    recent = CloudPrice("new-api", 1.0, 2.0, "2026-11", "a page", retrieved="2026-11-20", confirmed=True)
    stale = cloud_deployment(old, WORKLOAD, today=TODAY)
    fresh = cloud_deployment(recent, WORKLOAD, today=TODAY)
    assert stale.price_stale and stale.price is old
    assert [n.values for n in stale.notes if n.key == "notes.price_stale"] == [
        {"retrieved": "2025-01-15", "today": "2026-12-03"}
    ]
    assert not fresh.price_stale and all(n.key != "notes.price_stale" for n in fresh.notes)
    assert "more than six months before 2026-12-03" in Translator("en").text(stale.notes[0])
    # the same price is old a year later
    assert cloud_deployment(recent, WORKLOAD, today=dt.date(2027, 11, 21)).price_stale


def test_the_deployment_notes_say_when_a_price_is_unconfirmed_or_the_model_retired() -> None:
    given = cloud_deployment(CloudPrice("in-house", 1.0, 2.0, "", "given in the plan"), WORKLOAD, today=TODAY)
    retired = load_profiles().cloud["claude-3-5-haiku"]
    gone = cloud_deployment(retired, WORKLOAD, today=TODAY)
    assert "notes.price_unconfirmed" in [n.key for n in given.notes] and not given.price_stale
    assert "notes.model_retired" in [n.key for n in gone.notes]
    assert "notes.price_unconfirmed" not in [n.key for n in gone.notes]
    assert [n.key for n in cloud_deployment(load_profiles().cloud["gpt-4o"], WORKLOAD, today=TODAY).notes] == [
        "notes.list_price", "notes.data_leaves",
    ]  # fmt: skip


# ---------------------------------------------------------------- the report


PRICES = (
    CloudPrice("old-list-api", 1.0, 4.0, "2025-01", "https://example.com/old-prices", retrieved="2025-01-15",
               confirmed=True),
    CloudPrice("in-house-api", 1.0, 2.0, "", "given in the plan (no source stated)"),
    CloudPrice("fresh-api", 0.5, 1.5, "2026-11", "https://example.com/prices", retrieved="2026-11-20",
               confirmed=True),
    CloudPrice("gone-api", 0.25, 1.25, "2026-12", "retired, per https://example.com/retired",
               retrieved="2026-12-03", confirmed=True, retired=True),
)  # fmt: skip


def _cloud_rows(page: str, language: str) -> dict[str, str]:
    """Each row of the cloud table (the first table after the cloud heading), as text, by its model name."""
    heading = page.index(f"<h3>{Translator(language)('cloud.heading')}</h3>")
    table = page[page.index("<table", heading) :]
    table = table[: table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
        for price in PRICES:
            if text.startswith(price.name):
                rows[price.name] = text
    return rows


@pytest.mark.parametrize(
    ("language", "unconfirmed", "retired", "undated", "old", "warning"),
    [
        ("en", "unconfirmed", "retired", "undated", "over six months old", "Prices retrieved more than six months ago"),
        ("ja", "未確認", "提供終了", "日付不明", "6 か月以上前", "取得から 6 か月以上たっている価格があります"),
    ],
)
def test_the_report_shows_each_cloud_price_with_its_date_source_and_marks(
    tmp_path: Path, language: str, unconfirmed: str, retired: str, undated: str, old: str, warning: str
) -> None:
    findings, plan = _assessment()
    costs = cost_findings(findings, plan)
    deployments = [cloud_deployment(price, costs.workload, today=TODAY) for price in PRICES]
    costs.cloud = [
        CandidateCost(price.name, d, d.per_1000_tasks.value, d.per_month.value)
        for price, d in zip(PRICES, deployments, strict=True)
    ]
    page = render(ReportContent(findings, costs=costs), tmp_path, (language,)).read_text(encoding="utf-8")
    rows = _cloud_rows(page, language)
    assert set(rows) == {price.name for price in PRICES}
    assert "2025-01-15" in rows["old-list-api"] and old in rows["old-list-api"]
    assert "https://example.com/old-prices" in rows["old-list-api"] and unconfirmed not in rows["old-list-api"]
    assert unconfirmed in rows["in-house-api"] and undated in rows["in-house-api"]
    assert "2026-11-20" in rows["fresh-api"] and old not in rows["fresh-api"]
    assert unconfirmed not in rows["fresh-api"] and retired not in rows["fresh-api"]
    assert retired in rows["gone-api"] and "2026-12-03" in rows["gone-api"]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert re.search(f"{warning}[^.。]*old-list-api", text)
    assert not re.search(f"{warning}[^.。]*(fresh-api|gone-api|in-house-api)", text)  # only the old one
    assert '<p class="warn">' in page
