"""Render the text a model sees for an item: few-shot exemplars, the question and, for multiple choice,
the continuations whose likelihoods are compared.

Templates are Jinja2 in a sandbox with strict undefined variables. Item text is passed in as data and is
never parsed as a template, so task text containing ``{{ ... }}`` cannot change the prompt's structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from poccheck.records import Mode, Suite, TaskItem

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Variables: input, choices, letters, meta, id, type, category, mode, fewshot (exemplars for this mode, each with
# input, answer, rationale, choices) and step_by_step (the zero-shot chain-of-thought cue, or "").
DEFAULT_GENERATION_TEMPLATE = (
    "{% for ex in fewshot %}Q: {{ ex.input }}\nA: {% if mode == 'cot' and ex.rationale %}{{ ex.rationale }}"
    "{% if type != 'proof' %} {{ answer_is }} {{ ex.answer }}.{% endif %}{% else %}{{ ex.answer }}{% endif %}\n\n"
    "{% endfor %}Q: {{ input }}\nA:{{ step_by_step }}"
)
DEFAULT_MULTIPLE_CHOICE_TEMPLATE = (
    "{% for ex in fewshot %}Question: {{ ex.input }}\nAnswer: {{ ex.answer }}\n\n{% endfor %}"
    "Question: {{ input }}\nAnswer:"
)
COT_MULTIPLE_CHOICE_TEMPLATE = (
    "{% for ex in fewshot %}Q: {{ ex.input }}{% if ex.choices %}\nAnswer Choices:{% for c in ex.choices %}"
    " ({{ letters_all[loop.index0] }}) {{ c }}{% endfor %}{% endif %}\nA: {{ ex.rationale }} {{ answer_is }}"
    " {{ ex.answer }}.\n\n{% endfor %}Q: {{ input }}\nAnswer Choices:{% for c in choices %}"
    " ({{ letters[loop.index0] }}) {{ c }}{% endfor %}\nA:{{ step_by_step }}"
)
STEP_BY_STEP = {"en": " Let's think step by step.", "ja": " 順を追って考えましょう。"}
ANSWER_IS = {"en": "So the answer is", "ja": "答えは"}


@dataclass(frozen=True)
class Prompt:
    """The text sent to a model for one item."""

    text: str
    continuations: tuple[str, ...] = ()


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """Compile a prompt template; raises jinja2.TemplateSyntaxError on bad syntax."""
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(source)


def template_for(suite: Suite, item: TaskItem, mode: Mode) -> str:
    if suite.prompt_template:
        return suite.prompt_template
    if item.is_multiple_choice:
        return COT_MULTIPLE_CHOICE_TEMPLATE if mode == "cot" else DEFAULT_MULTIPLE_CHOICE_TEMPLATE
    return DEFAULT_GENERATION_TEMPLATE


def render_prompt(suite: Suite, item: TaskItem, mode: Mode = "fewshot") -> Prompt:
    """Render ``item`` under ``suite``'s template in a prompting mode. Raises jinja2 errors for a broken template.

    ``direct`` shows no exemplars; ``fewshot`` shows the suite's exemplars with their answers; ``cot`` shows
    exemplars with their rationales, or, when none has one, asks the model to think step by step. Multiple
    choice is scored by likelihood in ``direct`` and ``fewshot``, and generated (then its answer extracted) in
    ``cot``.
    """
    # exemplars of the item's own kind (with choices for multiple choice), and of its category when any are tagged
    exemplars = [] if mode == "direct" else [ex for ex in suite.fewshot if bool(ex.choices) == item.is_multiple_choice]
    if any(ex.category == item.category for ex in exemplars):
        exemplars = [ex for ex in exemplars if ex.category == item.category]
    else:
        exemplars = [ex for ex in exemplars if ex.category is None]
    cot = mode == "cot"
    if cot:
        exemplars = [ex for ex in exemplars if ex.rationale]
    language = "ja" if suite.language.startswith("ja") else "en"
    context: dict[str, Any] = {
        "input": item.input,
        "id": item.id,
        "type": item.type,
        "category": item.category,
        "mode": mode,
        "choices": list(item.choices),
        "letters": list(LETTERS[: len(item.choices)]),
        "letters_all": list(LETTERS),
        "meta": dict(item.metadata),
        "answer_is": ANSWER_IS[language],
        "step_by_step": STEP_BY_STEP[language] if cot and not exemplars else "",
        "fewshot": [
            {"input": ex.input, "answer": ex.answer, "choices": list(ex.choices), "rationale": ex.rationale or ""}
            for ex in exemplars
        ],
    }
    text = compile_template(template_for(suite, item, mode)).render(context)
    if not item.is_multiple_choice or cot:
        return Prompt(text)
    # As lm-evaluation-harness does, trailing whitespace moves from the prompt to the continuation so
    # every choice is scored from the same token boundary.
    stripped = text.rstrip(" ")
    moved = text[len(stripped) :] or " "
    return Prompt(stripped, tuple(moved + choice for choice in item.choices))
