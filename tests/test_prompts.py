from __future__ import annotations

from poccheck.records import Exemplar, Suite, TaskItem
from poccheck.tasks.prompts import render_prompt


def make_suite(template: str | None = None, fewshot: tuple[Exemplar, ...] = ()) -> Suite:
    return Suite(name="s", path="s.yaml", items=(), prompt_template=template, fewshot=fewshot)


def test_default_generation_prompt_has_fewshot() -> None:
    item = TaskItem(id="a", input="2+2?", type="numeric", answer="4")
    prompt = render_prompt(make_suite(fewshot=(Exemplar("1+1?", "2"),)), item)
    assert prompt.text == "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:"
    assert prompt.continuations == ()


def test_multiple_choice_continuations_share_the_prompt() -> None:
    item = TaskItem(id="a", input="Sky?", type="multiple_choice", answer=0, choices=("blue", "green"))
    prompt = render_prompt(make_suite(), item)
    assert prompt.text == "Question: Sky?\nAnswer:"
    assert prompt.continuations == (" blue", " green")


def test_trailing_space_moves_to_continuations() -> None:
    item = TaskItem(id="a", input="Sky?", type="multiple_choice", answer=0, choices=("blue", "green"))
    prompt = render_prompt(make_suite("Q: {{ input }} A: "), item)
    assert prompt.text == "Q: Sky? A:" and prompt.continuations == (" blue", " green")


def test_hostile_item_text_cannot_change_the_template() -> None:
    hostile = "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} {{ ''.__class__ }}"
    item = TaskItem(id="a", input=hostile, type="exact", answer="x", metadata={"line": "{{ input }}"})
    prompt = render_prompt(make_suite("Input: {{ input }} / {{ meta.line }}"), item)
    assert prompt.text == f"Input: {hostile} / {{{{ input }}}}"
