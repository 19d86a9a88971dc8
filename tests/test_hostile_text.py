"""Hostile task text: HTML, script tags, event handlers, Jinja2 syntax, terminal markup and control characters in
every field a task file or a model name can carry. Prompts take the text as data (the template's structure never
changes), the HTML report shows it intact as inert text (checked by parsing the page), the terminal shows it
literally, and ``--redact`` leaves none of an item's text in the page. Run time: about 20-40 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from poccheck.records import MODES, Exemplar, Suite, TaskItem
from poccheck.tasks.prompts import DEFAULT_GENERATION_TEMPLATE, render_prompt

HOSTILE = [
    '<script>alert("x")</script>',
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(2)>',
    "{{ 7*7 }} {% raw %} {# c #} {{ ''.__class__.__mro__ }}",
    "[bold red]INJECT[/] [/x] [link=http://example.invalid]click[/link]",
    "\x1b[31mred\x1b[0m \x07bell \x0bvt",
    "&amp; &lt;b&gt; ]]> <!-- -->",
]
SECRET = "SECRET-7d1f"

# ---------------------------------------------------------------- prompts

SENTINELS = ("\ue000", "\ue001", "\ue002", "\ue003")  # private-use characters no template contains
TEMPLATES = [
    None,
    "Task {{ id }} ({{ category }}): {{ input }}\n"
    "{% for c in choices %}{{ letters[loop.index0] }}. {{ c }}\n{% endfor %}Line: {{ meta.line }}\nAnswer:",
]
HOSTILE_TEXT = st.one_of(
    st.sampled_from(HOSTILE), st.text(alphabet=st.sampled_from(list("{}%#<>\"'&[]/ \\xa1")), min_size=1)
)


@settings(derandomize=True, database=None, max_examples=150, deadline=None)
@given(
    st.lists(HOSTILE_TEXT, min_size=4, max_size=4), st.sampled_from(TEMPLATES), st.sampled_from(MODES), st.booleans()
)
def test_hostile_fields_are_data_and_cannot_change_a_prompt_template(
    texts: list[str], template: str | None, mode: str, multiple_choice: bool
) -> None:
    """Rendering with hostile fields equals rendering with placeholders and then substituting the fields."""
    texts = [t.strip() or "x" for t in texts]

    def render(text: str, choice: str, line: str, shot: str) -> str:
        item = TaskItem(
            id="item-1",
            input=text,
            type="multiple_choice" if multiple_choice else "exact",
            answer=0 if multiple_choice else "a",
            category="rules",
            choices=(choice, "other choice") if multiple_choice else (),
            metadata={"line": line},
        )
        fewshot = (Exemplar(shot, "answer", rationale="because"),)
        suite = Suite(name="s", path="s.yaml", items=(item,), prompt_template=template, fewshot=fewshot)
        prompt = render_prompt(suite, item, mode)  # type: ignore[arg-type]
        return prompt.text + "\n--\n" + "\n".join(prompt.continuations)

    expected = render(*SENTINELS)
    for sentinel, text in zip(SENTINELS, texts, strict=True):
        expected = expected.replace(sentinel, text)
    assert render(*texts) == expected


def test_the_default_template_is_unchanged_by_jinja_in_the_input() -> None:
    item = TaskItem(id="a", input="{{ 7*7 }}{% if true %}yes{% endif %}", type="exact", answer="x")
    suite = Suite(name="s", path="s.yaml", items=(item,))
    assert render_prompt(suite, item).text == f"Q: {item.input}\nA:"
    assert "{{ input }}" in DEFAULT_GENERATION_TEMPLATE


# ---------------------------------------------------------------- the report and the terminal


class Page(HTMLParser):
    """Collects a page's text, tags and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> tuple[Page, str]:
    page = Page()
    html = path.read_text(encoding="utf-8")
    page.feed(html)
    page.close()
    return page, html


def assert_inert(page: Page) -> None:
    """The page holds no element, event handler or remote reference that text shown in it could have injected."""
    assert "script" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    assert page.tags.count("style") <= 1 + page.tags.count("svg")  # the page's and each chart's own, none injected
    assert not [name for name, _ in page.attributes if name.startswith("on")], "event handler attribute"
    assert not [v for n, v in page.attributes if n in ("src", "href") and (v or "").startswith(("http", "//", "java"))]


def hostile_suite() -> dict:
    """Exact-answer items no model can get right in 3 tokens, so every item is listed among the failures."""
    items = [
        {
            "id": f"h{number}-{text[:12]}",
            "type": "exact",
            "category": f"cat {text[:20]}",
            "input": f"{SECRET} input {number}: {text}",
            "answer": f"{SECRET} never {text}",
            "metadata": {"note": f"{SECRET} meta {text}"},
        }
        for number, text in enumerate(HOSTILE)
    ]
    items.append({"id": "mc", "input": f"{SECRET} pick", "choices": [f"{SECRET} {HOSTILE[0]}", "plain"], "answer": "A"})
    return {
        "name": "hostile [/x] <b>suite</b>",
        "description": HOSTILE[0],
        "max_tokens": 3,
        "stop": ["\n"],
        "fewshot": [{"input": f"{SECRET} shot {HOSTILE[1]}", "answer": "ok"}],
        "items": items,
    }


@pytest.mark.model
def test_hostile_text_is_inert_and_intact_in_report_and_terminal(bundled_model: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "hostile.yaml"
    tasks.write_text(yaml.safe_dump(hostile_suite(), allow_unicode=True), encoding="utf-8")
    model = tmp_path / "models [" / "x] <img src=x onerror=alert(3)> {{ 7*7 }}.gguf"  # the spec holds "[/x]"
    model.parent.mkdir()
    model.symlink_to(bundled_model)
    out = tmp_path / "poc"
    done = subprocess.run(
        [sys.executable, "-m", "poccheck", "assess", "--tasks", str(tasks), "--model", str(model), "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "[/x]" in done.stdout, done.stdout  # the model's name is shown literally, not read as terminal markup

    page, html = parse(out / "report.html")
    assert_inert(page)
    text = "".join(page.text)
    for hostile in HOSTILE:  # every field is shown intact, as text
        assert f"input {HOSTILE.index(hostile)}: {hostile}" in text, hostile
    assert str(model) in text  # the model's label too

    redacted = subprocess.run(
        [sys.executable, "-m", "poccheck", "report", str(out), "--redact"], capture_output=True, text=True, timeout=600
    )
    assert redacted.returncode == 0, redacted.stderr
    page, html = parse(out / "report.html")
    assert SECRET not in html, "item text left in a redacted report"
    text = "".join(page.text)
    assert all(f"h{n}-{HOSTILE[n][:12]}" in text for n in range(len(HOSTILE)))  # the ids remain, intact
