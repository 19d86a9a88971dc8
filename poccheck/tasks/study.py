"""The published study's CommonsenseQA protocol (Hsiao & Dutta 2025) as a poccheck suite: ``poccheck tasks
csqa-study`` writes it from the CommonsenseQA validation file, and ``poccheck assess --mode cot`` runs it.

The study (``AnnonymousForPapers/CoT_Reasoning_Test``, ``CSQA/CoT_*.py``) prompts with the 7 exemplars of Wei et
al. (2022) and their rationales, lays each question out as ``Q: {question} Answer Choices: (a) ...`` with one choice
per line and no trailing ``A:``, decodes greedily for 100 new tokens with Hugging Face's repetition penalty 0.0001,
and reads the letter after the first "the answer is (" up to the next ")"; anything else is no answer. The suite
below reproduces that: its template renders the study's prompt character for character (the exemplars are the
study's text as it is, including its third exemplar, whose rationale picks "natural habitat" but says "(b)"),
raw text without a chat template, no stop strings, and an answer pattern that takes the first match only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from poccheck.errors import Problem, TaskFileError
from poccheck.records import LETTERS

# (question, choices, rationale ending in the answer) as CSQA/CoT_SmolLM2-135M-Instruct.py writes them
CSQA_EXEMPLARS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "What do people use to absorb extra ink from a fountain pen?",
        ("shirt pocket", "calligrapher's hand", "inkwell", "desk drawer", "blotter"),
        "The answer must be an item that can absorb ink. Of the above choices, only blotters are used to absorb ink. "
        "So the answer is (e).",
    ),
    (
        "What home entertainment equipment requires cable?",
        ("radio shack", "substation", "television", "cabinet"),
        "The answer must require cable. Of the above choices, only television requires cable. So the answer is (c).",
    ),
    (
        "The fox walked from the city into the forest, what was it looking for?",
        ("pretty flowers", "hen house", "natural habitat", "storybook"),
        "The answer must be something in the forest. Of the above choices, only natural habitat is in the forest. "
        "So the answer is (b).",
    ),
    (
        "Sammy wanted to go to where the people were. Where might he go?",
        ("populated areas", "race track", "desert", "apartment", "roadblock"),
        "The answer must be a place with a lot of people. Of the above choices, only populated areas have a lot of "
        "people. So the answer is (a).",
    ),
    (
        "Where do you put your grapes just before checking out?",
        ("mouth", "grocery cart", "super market", "fruit basket", "fruit market"),
        "The answer should be the place where grocery items are placed before checking out. Of the above choices, "
        "grocery cart makes the most sense for holding grocery items. So the answer is (b).",
    ),
    (
        "Google Maps and other highway and street GPS services have replaced what?",
        ("united states", "mexico", "countryside", "atlas"),
        "The answer must be something that used to do what Google Maps and GPS services do, which is to give "
        "directions. Of the above choices, only atlases are used to give directions. So the answer is (d).",
    ),
    (
        "Before getting a divorce, what did the wife feel who was doing all the work?",
        ("harder", "anguish", "bitterness", "tears", "sadness"),
        "The answer should be the feeling of someone getting divorced who was doing all the work. Of the above "
        "choices, the closest feeling is bitterness. So the answer is (c).",
    ),
)

# The study's layout: each exemplar and the question as "Q: ... Answer Choices: (a) x\n(b) y\n", the exemplars'
# "A: rationale\n", and nothing after the question's last choice.
CSQA_TEMPLATE = (
    "{% for ex in fewshot %}Q: {{ ex.input }} Answer Choices: {% for c in ex.choices %}"
    "({{ letters_all[loop.index0] | lower }}) {{ c }}\n{% endfor %}A: {{ ex.rationale }}\n{% endfor %}"
    "Q: {{ input }} Answer Choices: {% for c in choices %}({{ letters[loop.index0] | lower }}) {{ c }}\n{% endfor %}"
)
# the study's split("the answer is (")[1], then up to the next ")" (or the end), stripped, must be one letter: the
# pattern matches at the first "the answer is (" only (nothing before it is one), and only a letter there
CSQA_ANSWER = r"(?s)\A(?:(?!the answer is \().)*the answer is \(\s*([A-Za-z])\s*(?:\)|\Z)"
STUDY_MAX_TOKENS = 100
STUDY_REPETITION_PENALTY = 0.0001


def csqa_study_suite(records: Iterable[Mapping[str, Any]], n: int | None = None) -> dict[str, Any]:
    """The suite document for CommonsenseQA items (``id``, ``question``, ``choices``, ``answer`` letter, as
    ``shared/data/csqa_validation/normalized.jsonl`` holds them): the first ``n``, in file order."""
    items: list[dict[str, Any]] = []
    for record in records:
        if n is not None and len(items) >= n:
            break
        items.append(
            {
                "id": str(record["id"]),
                "type": "multiple_choice",
                # the name the threshold chart knows: it overlays the study's own CommonsenseQA points
                "category": "commonsenseqa",
                "input": str(record["question"]),
                "choices": [str(c) for c in record["choices"]],
                "answer": f"({str(record['answer']).strip().upper()})",
            }
        )
    return {
        "name": "csqa-cot-study",
        "description": "CommonsenseQA validation under the protocol of Hsiao & Dutta (2025): 7-shot chain of "
        "thought (Wei et al. 2022 exemplars), greedy, 100 new tokens, repetition penalty 0.0001, no chat template.",
        "language": "en",
        "prompt_format": "raw",
        "prompt_template": CSQA_TEMPLATE,
        "answer_pattern": CSQA_ANSWER,
        "cot_max_tokens": STUDY_MAX_TOKENS,
        "cot_stop": [],
        "repetition_penalty": STUDY_REPETITION_PENALTY,
        "fewshot": [
            {"input": q, "choices": list(choices), "answer": f"({rationale[-3].upper()})", "rationale": rationale}
            for q, choices, rationale in CSQA_EXEMPLARS
        ],
        "items": items,
    }


def write_csqa_study(data: Path, out: Path, n: int | None = None) -> int:
    """Write the study's CommonsenseQA suite for the items of ``data`` (JSON Lines) to ``out``; returns how many
    items it holds. A line that is not a CommonsenseQA record is a TaskFileError naming the file, line and field."""
    records = []
    try:
        lines = data.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TaskFileError([Problem(str(data), None, None, f"cannot be read ({exc.strerror})")]) from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        field, message = None, None
        try:
            record = json.loads(line)
        except ValueError as exc:
            record, message = None, f"not JSON: {exc}"
        if message is None and not isinstance(record, dict):
            message = "not a JSON object"
        elif message is None:
            missing = [f for f in ("id", "question", "choices", "answer") if f not in record]
            if missing:
                field, message = missing[0], "missing (expected id, question, choices and an answer letter)"
            elif not isinstance(record["choices"], list) or not record["choices"]:
                field, message = "choices", "must be a list of choice texts"
            elif str(record["answer"]).strip().upper() not in LETTERS[: len(record["choices"])]:
                field, message = "answer", f"{record['answer']!r} is not the letter of one of its choices"
        if message is not None:
            raise TaskFileError([Problem(str(data), number, field, message)])
        records.append(record)
    document = csqa_study_suite(records, n)
    out.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    return len(document["items"])
