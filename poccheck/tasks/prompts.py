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

from poccheck.records import Suite, TaskItem

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

DEFAULT_GENERATION_TEMPLATE = (
    "{% for ex in fewshot %}Q: {{ ex.input }}\nA: {{ ex.answer }}\n\n{% endfor %}Q: {{ input }}\nA:"
)
DEFAULT_MULTIPLE_CHOICE_TEMPLATE = "Question: {{ input }}\nAnswer:"


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


def template_for(suite: Suite, item: TaskItem) -> str:
    if suite.prompt_template:
        return suite.prompt_template
    return DEFAULT_MULTIPLE_CHOICE_TEMPLATE if item.is_multiple_choice else DEFAULT_GENERATION_TEMPLATE


def render_prompt(suite: Suite, item: TaskItem) -> Prompt:
    """Render ``item`` under ``suite``'s template. Raises jinja2 errors for a broken template."""
    context: dict[str, Any] = {
        "input": item.input,
        "id": item.id,
        "type": item.type,
        "category": item.category,
        "choices": list(item.choices),
        "letters": list(LETTERS[: len(item.choices)]),
        "meta": dict(item.metadata),
        "fewshot": [{"input": ex.input, "answer": ex.answer, "choices": list(ex.choices)} for ex in suite.fewshot],
    }
    text = compile_template(template_for(suite, item)).render(context)
    if not item.is_multiple_choice:
        return Prompt(text)
    # As lm-evaluation-harness does, trailing whitespace moves from the prompt to the continuation so
    # every choice is scored from the same token boundary.
    stripped = text.rstrip(" ")
    moved = text[len(stripped) :] or " "
    return Prompt(stripped, tuple(moved + choice for choice in item.choices))
