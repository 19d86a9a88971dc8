"""Render the text a model sees for an item: few-shot exemplars, the question and, for multiple choice,
the continuations whose likelihoods are compared.

Templates are Jinja2 in a sandbox with strict undefined variables. Item text is passed in as data and is
never parsed as a template, so task text containing ``{{ ... }}`` cannot change the prompt's structure.

A prompt comes in two forms. ``raw`` is one text (the published study's protocol). ``chat`` is a list of turns for
the model's own chat template (applied by the backend): each exemplar is a user turn and the assistant's reply,
the item is the last user turn, and multiple-choice continuations are the start of the assistant's reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from poccheck.records import LETTERS, EffectiveFormat, Exemplar, Mode, Suite, TaskItem, Turn

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
# In a chat the cue is part of the question. Where the answer is read from the chain's closing sentence, it asks
# for the reasoning first and that sentence last: told only how to end, small instruct models (Qwen2.5-Coder 0.5B)
# skip the reasoning and answer at once; told only to think step by step, they end with "Answer: X", which no
# default answer pattern reads.
CHAT_STEP_BY_STEP = {"en": "Let's think step by step.", "ja": "順を追って考えましょう。"}
CHAT_REASON_THEN_ANSWER = {
    "en": 'Explain your reasoning step by step first. Then, on the last line, write "So the answer is" followed by '
    "the answer.",
    "ja": "まず順を追って考え方を説明してください。そのうえで、最後の行に「答えは」に続けて答えを書いてください。",
}
ANSWER_CHOICES = "Answer Choices:"


@dataclass(frozen=True)
class Prompt:
    """What is sent to a model for one item: a text, or chat turns (``turns``) for the model's chat template.

    For a chat prompt ``text`` is what the model reads (the template applied), or a plain transcript of the turns
    where the template is not known here (before a model is chosen, or a server's)."""

    text: str
    continuations: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()


def transcript(turns: tuple[Turn, ...]) -> str:
    """A readable, model-independent form of chat turns, ending where the assistant's reply begins."""
    return "".join(f"[{turn.role}]\n{turn.content}\n\n" for turn in turns) + "[assistant]\n"


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


def render_prompt(
    suite: Suite, item: TaskItem, mode: Mode = "fewshot", prompt_format: EffectiveFormat = "raw"
) -> Prompt:
    """Render ``item`` under ``suite``'s template in a prompting mode. Raises jinja2 errors for a broken template.

    ``direct`` shows no exemplars; ``fewshot`` shows the suite's exemplars with their answers; ``cot`` shows
    exemplars with their rationales, or, when none has one, asks the model to think step by step. Multiple
    choice is scored by likelihood in ``direct`` and ``fewshot``, and generated (then its answer extracted) in
    ``cot``. ``prompt_format`` ``chat`` gives the same prompt as chat turns (see :func:`chat_turns`).
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
    if prompt_format == "chat":
        turns = chat_turns(suite, item, mode, exemplars, context)
        scored = item.is_multiple_choice and not cot
        return Prompt(transcript(turns), tuple(item.choices) if scored else (), turns)
    text = compile_template(template_for(suite, item, mode)).render(context)
    if not item.is_multiple_choice or cot:
        return Prompt(text)
    # As lm-evaluation-harness does, trailing whitespace moves from the prompt to the continuation so
    # every choice is scored from the same token boundary.
    stripped = text.rstrip(" ")
    moved = text[len(stripped) :] or " "
    return Prompt(stripped, tuple(moved + choice for choice in item.choices))


def chat_turns(
    suite: Suite, item: TaskItem, mode: Mode, exemplars: list[Exemplar], context: dict[str, Any]
) -> tuple[Turn, ...]:
    """The prompt as chat turns: each exemplar a user turn and the assistant's reply, the item the last user turn.

    A suite's own ``prompt_template`` lays out the whole prompt itself, so its text becomes the one user turn.
    Turn contents are stripped: chat templates commonly trim them, and the backend keeps them apart from the
    template's text (see :mod:`poccheck.backends.chat`)."""
    if suite.prompt_template:
        return (Turn("user", compile_template(suite.prompt_template).render(context).strip()),)
    cot = mode == "cot"
    language = "ja" if suite.language.startswith("ja") else "en"
    listed = cot and item.is_multiple_choice  # a chain of thought names its choice by letter
    turns: list[Turn] = []
    for ex in exemplars:
        turns.append(Turn("user", _question(ex.input, ex.choices if listed else ())))
        if cot and ex.rationale:
            closing = "" if item.type == "proof" else f" {ANSWER_IS[language]} {ex.answer}."
            turns.append(Turn("assistant", f"{ex.rationale.strip()}{closing}".strip()))
        else:
            turns.append(Turn("assistant", ex.answer.strip()))
    question = _question(item.input, item.choices if listed else ())
    if cot and not exemplars:
        read_from_closing = suite.answer_pattern is None and item.type != "proof"
        cue = (CHAT_REASON_THEN_ANSWER if read_from_closing else CHAT_STEP_BY_STEP)[language]
        question = f"{question}\n\n{cue}"
    turns.append(Turn("user", question))
    return tuple(turns)


def _question(text: str, choices: tuple[str, ...]) -> str:
    if not choices:
        return text.strip()
    listed = "".join(f" ({LETTERS[index]}) {choice}" for index, choice in enumerate(choices))
    return f"{text.strip()}\n{ANSWER_CHOICES}{listed}"


def read_letter(reply: str, choices: Sequence[str]) -> int | None:
    """The option a reply names: a letter (``B``, ``(B)``, ``B.``) or, failing that, a choice's own text."""
    letters = LETTERS[: len(choices)]
    match = re.search(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", reply.strip())
    if match:
        return letters.index(match.group(1))
    lowered = reply.strip().lower()
    for index, choice in enumerate(choices):
        if choice.strip() and choice.strip().lower() in lowered:
            return index
    return None
