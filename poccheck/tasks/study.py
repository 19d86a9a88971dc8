"""The published study's protocols (Hsiao & Dutta 2025) as poccheck suites: ``poccheck tasks csqa-study`` and
``poccheck tasks prontoqa-study`` write them from the shared data files, and ``poccheck assess --mode cot`` runs them.

The study (``AnnonymousForPapers/CoT_Reasoning_Test``, ``CSQA/CoT_*.py``) prompts with the 7 exemplars of Wei et
al. (2022) and their rationales, lays each question out as ``Q: {question} Answer Choices: (a) ...`` with one choice
per line and no trailing ``A:``, decodes greedily for 100 new tokens with Hugging Face's repetition penalty 0.0001,
and reads the letter after the first "the answer is (" up to the next ")"; anything else is no answer. The suite
below reproduces that: its template renders the study's prompt character for character (the exemplars are the
study's text as it is, including its third exemplar, whose rationale picks "natural habitat" but says "(b)"),
raw text without a chat template, no stop strings, and an answer pattern that takes the first match only.

PrOntoQA-OOD (``prontoqa/run_experiment.py``): each item is the study's own prompt, 3 worked 1-hop examples of the
item's rule and its question ending in ``A:``, as raw text; greedy, 256 new tokens, the same repetition penalty, the
output cut at the next ``Q:``; the proof is checked by the study's checker (:mod:`poccheck.grading.prontoqa`),
strictly (every step valid) and leniently (the study's headline "proof contains the correct proof").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from poccheck.errors import Problem, TaskFileError
from poccheck.records import LETTERS, PRONTOQA_CHECKER, TaskItem, content_hash

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


# PrOntoQA's rule names (the ids of shared/data/prontoqa_ood) and the names the study's tables give them
PRONTOQA_RULES = {
    "ModusPonens": "implication_elimination",
    "AndIntro": "conjunction_introduction",
    "AndElim": "conjunction_elimination",
    "OrIntro": "disjunction_introduction",
    "OrElim": "disjunction_elimination",
    "ProofByContra": "proof_by_contradiction",
}
PRONTOQA_MAX_TOKENS = 256
PRONTOQA_STOP = ("Q:",)
_PRONTOQA_ID = re.compile(r"\Aprontoqa_ood_([A-Za-z]+)_(\d+)\Z")


def prontoqa_rule(item_id: str) -> str | None:
    """The study's name of the rule a PrOntoQA-OOD id (``prontoqa_ood_ModusPonens_0``) tests, or None."""
    match = _PRONTOQA_ID.match(item_id)
    return PRONTOQA_RULES.get(match.group(1)) if match else None


def prontoqa_study_suite(records: Iterable[Mapping[str, Any]], n_per_rule: int | None = None) -> dict[str, Any]:
    """The suite document for PrOntoQA-OOD items (``id``, ``question``, ``answer`` as
    ``shared/data/prontoqa_ood/normalized.jsonl`` holds them): the first ``n_per_rule`` of each rule, in file order.
    Each item's category is ``prontoqa_<rule>``, the rule as the study's tables name it."""
    items: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for record in records:
        rule = prontoqa_rule(str(record["id"]))
        if rule is None or (n_per_rule is not None and taken.get(rule, 0) >= n_per_rule):
            continue
        taken[rule] = taken.get(rule, 0) + 1
        items.append(
            {
                "id": str(record["id"]),
                "type": "proof",
                "category": f"prontoqa_{rule}",
                "input": str(record["question"]),
                "answer": str(record["answer"]).strip(),
                "metadata": {"checker": PRONTOQA_CHECKER, "rule": rule, "hops": 1},
            }
        )
    return {
        "name": "prontoqa-ood-study",
        "description": "PrOntoQA-OOD 1-hop proofs under the protocol of Hsiao & Dutta (2025): the study's 3-shot "
        "in-demonstration prompts, greedy, 256 new tokens, repetition penalty 0.0001, cut at the next 'Q:', no chat "
        "template; graded by the study's proof checker, strict and lenient.",
        "language": "en",
        "prompt_format": "raw",
        "prompt_template": "{{ input }}",
        "cot_max_tokens": PRONTOQA_MAX_TOKENS,
        "cot_stop": list(PRONTOQA_STOP),
        "repetition_penalty": STUDY_REPETITION_PENALTY,
        "items": items,
    }


_EXEMPLAR = re.compile(r"\A(?P<prompt>Q: .+?\n+A:) (?P<proof>.+)\Z", re.S)  # proofs by cases hold blank lines
_BLOCKS = re.compile(r"\n+(?=Q: )")  # a prompt's worked examples and its question, each from its "Q: "
_VALIDATION_EVERY = 10  # the study held out 10% of the 1,800 pairs for validation (180)


def prontoqa_finetune_suite(
    records: Iterable[Mapping[str, Any]], n_test_per_rule: int | None = None, n_examples_per_rule: int | None = None
) -> dict[str, Any]:
    """The study's fine-tuning data as one suite (``poccheck finetune`` reads its ``split`` marks): the worked
    examples of every 3-shot prompt (3 x 100 x 6 = 1,800 question-proof pairs) for training, 1 in 10 of them (by
    content hash, so copies stay together) for validation, and each prompt's own test question, 0-shot
    (``Q: ...`` then ``A:``), held out for testing: the first ``n_test_per_rule`` of each rule. With
    ``n_examples_per_rule``, only the first that many worked examples of each rule are kept (a subset for small
    machines; validation is still 1 in 10 of those).

    A worked example that reads the same as any test question (of all of them, not only those kept) is left out of
    training, so no test question is ever trained on. Decoding as the study's: greedy, 256 new tokens, repetition
    penalty 0.0001, cut at the next ``Q:``; direct mode (the question alone), raw text."""
    records = list(records)
    tests: list[dict[str, Any]] = []
    exemplars: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for record in records:
        rule = prontoqa_rule(str(record["id"]))
        if rule is None:
            continue
        *shots, question = _BLOCKS.split(str(record["question"]).strip())
        metadata = {"checker": PRONTOQA_CHECKER, "rule": rule, "hops": 1}
        if n_test_per_rule is None or taken.get(rule, 0) < n_test_per_rule:
            taken[rule] = taken.get(rule, 0) + 1
            tests.append(
                {
                    "id": str(record["id"]), "type": "proof", "category": f"prontoqa_{rule}",
                    "input": question.strip(), "answer": str(record["answer"]).strip(), "split": "test",
                    "metadata": metadata,
                }
            )  # fmt: skip
        for index, shot in enumerate(shots):
            match = _EXEMPLAR.match(shot.strip())
            if match is None:
                raise ValueError(f"{record['id']}: worked example {index + 1} is not 'Q: ...' then 'A: <proof>'")
            exemplars.append(
                {
                    "id": f"{record['id']}_shot{index + 1}", "type": "proof", "category": f"prontoqa_{rule}",
                    "input": match["prompt"], "answer": match["proof"].strip(),
                    "metadata": metadata,
                }
            )  # fmt: skip
    every_test = {content_hash(_as_item(_BLOCKS.split(str(r["question"]).strip())[-1].strip())) for r in records}
    kept: list[dict[str, Any]] = []
    per_rule: dict[str, int] = {}
    for entry in exemplars:
        digest = content_hash(_as_item(entry["input"]))
        if digest in every_test:
            continue
        per_rule[entry["category"]] = per_rule.get(entry["category"], 0) + 1
        if n_examples_per_rule is not None and per_rule[entry["category"]] > n_examples_per_rule:
            continue
        entry["split"] = "validation" if int(digest, 16) % _VALIDATION_EVERY == 0 else "train"
        kept.append(entry)
    dropped = sum(content_hash(_as_item(e["input"])) in every_test for e in exemplars)
    return {
        "name": "prontoqa-ood-finetune",
        "description": "PrOntoQA-OOD 1-hop fine-tuning data of Hsiao & Dutta (2025): the worked examples of the "
        f"study's 3-shot prompts for training and validation ({len(kept)} pairs; {dropped} left out because they read "
        "the same as a test question), each prompt's test question 0-shot for testing; greedy, 256 new tokens, "
        "repetition penalty 0.0001, cut at the next 'Q:', no chat template; graded by the study's proof checker.",
        "language": "en",
        "prompt_format": "raw",
        "prompt_template": "{{ input }}",
        "max_tokens": PRONTOQA_MAX_TOKENS,
        "stop": list(PRONTOQA_STOP),
        "repetition_penalty": STUDY_REPETITION_PENALTY,
        "items": kept + tests,
    }


def _as_item(text: str) -> TaskItem:
    return TaskItem(id="-", type="proof", input=text, answer="-")


def _csqa_problem(record: dict[str, Any]) -> tuple[str | None, str] | None:
    missing = [f for f in ("id", "question", "choices", "answer") if f not in record]
    if missing:
        return missing[0], "missing (expected id, question, choices and an answer letter)"
    if not isinstance(record["choices"], list) or not record["choices"]:
        return "choices", "must be a list of choice texts"
    if str(record["answer"]).strip().upper() not in LETTERS[: len(record["choices"])]:
        return "answer", f"{record['answer']!r} is not the letter of one of its choices"
    return None


def _prontoqa_problem(record: dict[str, Any]) -> tuple[str | None, str] | None:
    missing = [f for f in ("id", "question", "answer") if f not in record]
    if missing:
        return missing[0], "missing (expected id, question and the gold proof as answer)"
    if prontoqa_rule(str(record["id"])) is None:
        rules = ", ".join(PRONTOQA_RULES)
        return "id", f"{record['id']!r} is not prontoqa_ood_<rule>_<k> with a rule among {rules}"
    if not isinstance(record["question"], str) or "Prove:" not in record["question"]:
        return "question", "must be the prompt text, ending with the question's 'Prove: ...' goal and 'A:'"
    if not isinstance(record["answer"], str) or not record["answer"].strip():
        return "answer", "must be the gold proof's text"
    return None


def _worked_examples_problem(record: dict[str, Any]) -> tuple[str | None, str] | None:
    *shots, _ = _BLOCKS.split(str(record["question"]).strip())
    for index, shot in enumerate(shots):
        if _EXEMPLAR.match(shot.strip()) is None:
            return "question", f"worked example {index + 1} is not 'Q: <question>' then 'A: <proof>'"
    return None


def _read_records(data: Path, check: Callable[[dict[str, Any]], tuple[str | None, str] | None]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file; the first bad line is a TaskFileError naming file, line and field."""
    try:
        lines = data.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TaskFileError([Problem(str(data), None, None, f"cannot be read ({reason})")]) from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TaskFileError([Problem(str(data), number, None, f"not JSON: {exc}")]) from exc
        found = check(record) if isinstance(record, dict) else (None, "not a JSON object")
        if found is not None:
            raise TaskFileError([Problem(str(data), number, found[0], found[1])])
        records.append(record)
    return records


def _write(document: dict[str, Any], out: Path) -> int:
    out.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    return len(document["items"])


def write_csqa_study(data: Path, out: Path, n: int | None = None) -> int:
    """Write the study's CommonsenseQA suite for the items of ``data`` (JSON Lines) to ``out``; returns how many
    items it holds. A line that is not a CommonsenseQA record is a TaskFileError naming the file, line and field."""
    return _write(csqa_study_suite(_read_records(data, _csqa_problem), n), out)


def write_prontoqa_finetune(
    data: Path, out: Path, n_test_per_rule: int | None = None, n_examples_per_rule: int | None = None
) -> int:
    """Write the study's PrOntoQA-OOD fine-tuning suite (:func:`prontoqa_finetune_suite`) to ``out``; returns how
    many items it holds. A line that is not a PrOntoQA-OOD record is a TaskFileError naming the file, line and
    field; a prompt whose worked examples are not ``Q:``/``A:`` pairs one naming its question."""
    records = _read_records(data, lambda r: _prontoqa_problem(r) or _worked_examples_problem(r))
    return _write(prontoqa_finetune_suite(records, n_test_per_rule, n_examples_per_rule), out)


def write_prontoqa_study(data: Path, out: Path, n_per_rule: int | None = None) -> int:
    """Write the study's PrOntoQA-OOD suite for the items of ``data`` (JSON Lines) to ``out``; returns how many
    items it holds. A line that is not a PrOntoQA-OOD record is a TaskFileError naming the file, line and field."""
    return _write(prontoqa_study_suite(_read_records(data, _prontoqa_problem), n_per_rule), out)
