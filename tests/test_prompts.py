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


def test_modes_choose_exemplars_and_cues() -> None:
    exemplars = (
        Exemplar("1+1?", "2", rationale="One and one make two."),
        Exemplar("Pick", "yes", choices=("yes", "no"), rationale="It says yes."),
    )
    gen = TaskItem(id="a", input="2+2?", type="numeric", answer="4")
    suite = make_suite(fewshot=exemplars)
    assert render_prompt(suite, gen, "direct").text == "Q: 2+2?\nA:"
    assert render_prompt(suite, gen, "fewshot").text == "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:"
    assert render_prompt(suite, gen, "cot").text == (
        "Q: 1+1?\nA: One and one make two. So the answer is 2.\n\nQ: 2+2?\nA:"
    )
    zero_shot = render_prompt(make_suite(fewshot=(Exemplar("1+1?", "2"),)), gen, "cot").text
    assert zero_shot.endswith("Q: 2+2?\nA: Let's think step by step.")
    mc = TaskItem(id="b", input="Sky?", type="multiple_choice", answer=0, choices=("blue", "green"))
    scored = render_prompt(suite, mc, "fewshot")
    assert scored.continuations == (" blue", " green") and scored.text.startswith("Question: Pick\nAnswer: yes")
    chain = render_prompt(suite, mc, "cot")
    assert chain.continuations == () and chain.text.endswith("Q: Sky?\nAnswer Choices: (A) blue (B) green\nA:")
    assert "It says yes. So the answer is yes." in chain.text


def test_exemplars_tagged_with_a_category_are_shown_only_for_it() -> None:
    exemplars = (Exemplar("x", "1", category="math"), Exemplar("y", "2", category="rules"), Exemplar("z", "3"))
    suite = make_suite(fewshot=exemplars)
    math_item = TaskItem(id="a", input="q", type="numeric", answer="1", category="math")
    other = TaskItem(id="b", input="q", type="numeric", answer="1", category="other")
    assert render_prompt(suite, math_item).text == "Q: x\nA: 1\n\nQ: q\nA:"
    assert render_prompt(suite, other).text == "Q: z\nA: 3\n\nQ: q\nA:"
