"""The published study's protocols as suites: the prompt each renders is the study's own, character for character;
answers are read (and proofs checked) as the study reads them; the repetition penalty is Hugging Face's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poccheck import models
from poccheck.backends.base import GenerationRequest, penalise_repeats
from poccheck.backends.llama_cpp import LlamaCppBackend
from poccheck.errors import TaskFileError
from poccheck.finetune.split import heldout_document, split_suite
from poccheck.grading import grade_output
from poccheck.records import Completion, content_hash
from poccheck.runner import work_items
from poccheck.tasks import load_suites
from poccheck.tasks.prompts import render_prompt
from poccheck.tasks.study import write_csqa_study, write_prontoqa_finetune, write_prontoqa_study

from .conftest import SHARED

# CSQA/CoT_SmolLM2-135M-Instruct.py of AnnonymousForPapers/CoT_Reasoning_Test, as it is
STUDY_EXEMPLARS = "Q: What do people use to absorb extra ink from a fountain pen? Answer Choices: (a) shirt pocket\n(b) calligrapher's hand\n(c) inkwell\n(d) desk drawer\n(e) blotter\nA: The answer must be an item that can absorb ink. Of the above choices, only blotters are used to absorb ink. So the answer is (e).\nQ: What home entertainment equipment requires cable? Answer Choices: (a) radio shack\n(b) substation\n(c) television\n(d) cabinet\nA: The answer must require cable. Of the above choices, only television requires cable. So the answer is (c).\nQ: The fox walked from the city into the forest, what was it looking for? Answer Choices: (a) pretty flowers\n(b) hen house\n(c) natural habitat\n(d) storybook\nA: The answer must be something in the forest. Of the above choices, only natural habitat is in the forest. So the answer is (b).\nQ: Sammy wanted to go to where the people were. Where might he go? Answer Choices: (a) populated areas\n(b) race track\n(c) desert\n(d) apartment\n(e) roadblock\nA: The answer must be a place with a lot of people. Of the above choices, only populated areas have a lot of people. So the answer is (a).\nQ: Where do you put your grapes just before checking out? Answer Choices: (a) mouth\n(b) grocery cart\n(c) super market\n(d) fruit basket\n(e) fruit market\nA: The answer should be the place where grocery items are placed before checking out. Of the above choices, grocery cart makes the most sense for holding grocery items. So the answer is (b).\nQ: Google Maps and other highway and street GPS services have replaced what? Answer Choices: (a) united states\n(b) mexico\n(c) countryside\n(d) atlas\nA: The answer must be something that used to do what Google Maps and GPS services do, which is to give directions. Of the above choices, only atlases are used to give directions. So the answer is (d).\nQ: Before getting a divorce, what did the wife feel who was doing all the work? Answer Choices: (a) harder\n(b) anguish\n(c) bitterness\n(d) tears\n(e) sadness\nA: The answer should be the feeling of someone getting divorced who was doing all the work. Of the above choices, the closest feeling is bitterness. So the answer is (c).\n"  # noqa: E501

ITEMS = [
    {
        "id": "q1",
        "question": "Where would you find magazines along side many other printed works?",
        "choices": ["doctor", "bookstore", "market", "train station", "mortuary"],
        "answer": "B",
    },
    {
        "id": "q2",
        "question": 'What is a person likely to do with "quotes" & {{ braces }}?',
        "choices": ["read", "write", "indestructible", "indestructible", "sing"],
        "answer": "d",
    },
]


def study_prompt(question: str, choices: list[str]) -> str:
    """create_cot_prompt of the study's script."""
    prompt = STUDY_EXEMPLARS + f"Q: {question} Answer Choices: "
    for i, choice in enumerate(choices):
        prompt += f"({chr(97 + i)}) {choice}\n"
    return prompt


def study_answer(response: str) -> str | None:
    """predict_answer's parsing: the letter after the first 'the answer is (' up to ')', else no answer."""
    stop = "the answer is ("
    if stop not in response:
        return None
    rest = response.split(stop)[1].strip()
    chosen = (rest.split(")")[0].strip() if ")" in rest else rest).lower()
    return chosen.upper() if chosen in {chr(97 + i) for i in range(26)} else None


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    data = tmp_path / "csqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ITEMS), encoding="utf-8")
    out = tmp_path / "study.yaml"
    assert write_csqa_study(data, out) == 2
    return out


def test_the_suite_renders_the_studys_prompt_character_for_character(suite_file: Path) -> None:
    (suite,) = load_suites([suite_file])
    for item, record in zip(suite.items, ITEMS, strict=True):
        assert render_prompt(suite, item, "cot").text == study_prompt(record["question"], record["choices"])
    (work, _) = work_items(suite, "cot")
    request = work.generation_request
    assert (request.max_tokens, request.stop, request.repetition_penalty) == (100, (), 0.0001)
    assert suite.prompt_format == "raw" and suite.items[1].answer == 3  # a choice written twice: by its letter


@pytest.mark.parametrize(
    "output",
    [
        " The answer must be a place. So the answer is (b).",
        " So the answer is (b). Q: next? A: So the answer is (c).",  # the first answer counts
        " So the answer is (B) bookstore",
        " so the answer is (b).",  # the study's match is case-sensitive: no answer
        " So the answer is b.",
        " So the answer is (bookstore).",
        " So the answer is (b",
        " So the answer is ( b ) indeed",
        " So the answer is ().",
        "",
    ],
)
def test_answers_are_read_as_the_study_reads_them(suite_file: Path, output: str) -> None:
    (suite,) = load_suites([suite_file])
    item = suite.items[0]
    grade = grade_output(item, output, None, "cot", suite.answer_pattern)
    expected = study_answer(output)
    assert grade.answered == (expected is not None)
    if expected is not None:
        assert grade.correct == (expected == "B")


def test_the_repetition_penalty_is_hugging_faces() -> None:
    torch = pytest.importorskip("torch")
    from transformers import RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, 500).astype(np.float32)
    context = [3, 17, 17, 250, 499, 0]
    seen = np.zeros(500, dtype=np.bool_)
    seen[context] = True
    for penalty in (0.0001, 0.5, 1.3):
        theirs = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([context]), torch.tensor(logits[None]))
        np.testing.assert_allclose(penalise_repeats(logits, seen, penalty), theirs[0].numpy(), rtol=1e-6)
    assert int(penalise_repeats(logits, seen, 0.0001).argmax()) in context  # below 1 it rewards repeats


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"id": "x", "question": "q", "choices": ["a", "b"]}', "answer"),
        ('{"id": "x", "question": "q", "choices": ["a", "b"], "answer": "C"}', "answer"),
        ('{"id": "x", "question": "q", "choices": [], "answer": "A"}', "choices"),
        ("not json", None),
    ],
)
def test_a_bad_line_is_named_with_its_file_line_and_field(tmp_path: Path, line: str, field: str | None) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(ITEMS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as caught:
        write_csqa_study(data, tmp_path / "out.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(data), 2, field)
    assert not (tmp_path / "out.yaml").exists()


def test_a_bad_repetition_penalty_is_named(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("repetition_penalty: 0\nitems:\n  - {id: a, type: exact, input: q, answer: x}\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=r"s.yaml:1 \[repetition_penalty\]: must be a number above 0"):
        load_suites([suite])


@pytest.mark.model
def test_llama_cpp_applies_the_penalty_alike_alone_and_batched(bundled_model: Path) -> None:
    backend = LlamaCppBackend(models.resolve("gemma3-270m-q4"))
    try:
        prompt = "Q: Line L1 made 400 parts and scrapped 12. How many are good? Think step by step.\nA:"
        other = "Q: A crate holds 24 boxes. How many boxes are in 3 crates? Think step by step.\nA:"
        penalised = GenerationRequest(prompt, (), 40, repetition_penalty=0.0001)
        plain = GenerationRequest(other, (), 40)

        def fresh(request: GenerationRequest) -> str:  # from an empty context: a kept prompt's last token is
            backend._forget(backend._llm.ctx, [backend._held])  # decoded alone, and a near-tie may then flip
            return backend.generate(request).text

        alone = fresh(penalised)
        backend._forget(backend._llm.ctx, [backend._held])
        together = dict(backend.generate_many([penalised, plain, penalised], 2))
        texts = [r.text for _, r in sorted(together.items()) if isinstance(r, Completion)]
        assert texts == [alone, fresh(plain), alone]  # each sequence has its own penalty and its own context
        assert alone != fresh(GenerationRequest(prompt, (), 40))  # 0.0001 rewards every context token: not greedy
    finally:
        backend.close()


PRONTOQA = [
    {
        "id": f"prontoqa_ood_{rule}_{k}",
        "question": "Q: Each wumpus is hot. Rex is a wumpus. Prove: Rex is hot.\nA: Rex is a wumpus. "
        f"Each wumpus is hot. Rex is hot.\n\nQ: Every yumpus is snowy. Polly{k} is a yumpus. "
        f"Prove: Polly{k} is snowy.\nA:",
        "choices": None,
        "answer": f" Polly{k} is a yumpus. Every yumpus is snowy. Polly{k} is snowy.",
    }
    for rule in ("ModusPonens", "OrElim")
    for k in range(3)
]


def test_the_prontoqa_suite_is_the_studys_prompts_graded_by_its_checker(tmp_path: Path) -> None:
    data = tmp_path / "pq.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PRONTOQA), encoding="utf-8")
    out = tmp_path / "pq.yaml"
    assert write_prontoqa_study(data, out, 2) == 4  # the first two of each rule
    (suite,) = load_suites([out])
    assert [i.id for i in suite.items] == [f"prontoqa_ood_{r}_{k}" for r in ("ModusPonens", "OrElim") for k in (0, 1)]
    assert {i.category for i in suite.items} == {"prontoqa_implication_elimination", "prontoqa_disjunction_elimination"}
    for item, record in zip(suite.items, [PRONTOQA[0], PRONTOQA[1], PRONTOQA[3], PRONTOQA[4]], strict=True):
        assert render_prompt(suite, item, "cot").text == record["question"]
    request = work_items(suite, "cot")[0].generation_request
    assert (request.max_tokens, request.stop, request.repetition_penalty) == (256, ("Q:",), 0.0001)
    item = suite.items[0]
    right = grade_output(item, " Polly0 is a yumpus. Every yumpus is snowy. Polly0 is snowy.\n\n", None, "cot")
    skipped = grade_output(item, " Polly0 is a yumpus. Polly0 is snowy.", None, "cot")
    assert (right.correct, right.lenient, skipped.correct, skipped.lenient) == (True, True, False, True)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"id": "prontoqa_ood_ModusPonens_9", "question": "Q: a. Prove: b.\\nA:"}', "answer"),
        ('{"id": "prontoqa_ood_Modus_9", "question": "Q: a. Prove: b.\\nA:", "answer": "b."}', "id"),
        ('{"id": "prontoqa_ood_AndElim_9", "question": "Q: a.\\nA:", "answer": "b."}', "question"),
        ('{"id": "prontoqa_ood_AndElim_9", "question": "Q: a. Prove: b.\\nA:", "answer": " "}', "answer"),
        ("[1, 2]", None),
    ],
)
def test_a_bad_prontoqa_line_is_named_with_its_file_line_and_field(
    tmp_path: Path, line: str, field: str | None
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(PRONTOQA[0]) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as caught:
        write_prontoqa_study(data, tmp_path / "out.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(data), 3, field)
    assert not (tmp_path / "out.yaml").exists()


def test_the_shared_prontoqa_file_gives_100_items_per_rule(tmp_path: Path) -> None:
    data = SHARED / "data" / "prontoqa_ood" / "normalized.jsonl"
    if not data.exists():
        pytest.skip("../shared/data/prontoqa_ood is not here")
    assert write_prontoqa_study(data, tmp_path / "pq.yaml") == 600
    (suite,) = load_suites([tmp_path / "pq.yaml"])
    counts = {c: sum(i.category == c for i in suite.items) for c in {i.category for i in suite.items}}
    assert len(counts) == 6 and set(counts.values()) == {100}


def test_the_finetune_suite_trains_on_the_worked_examples_and_tests_the_questions_0_shot(tmp_path: Path) -> None:
    # a worked example that reads as another prompt's test question (Polly1's, here in prompt 2) is left out
    records = [dict(r) for r in PRONTOQA]
    records[2]["question"] = records[2]["question"].replace(
        "Q: Each wumpus is hot. Rex is a wumpus. Prove: Rex is hot.\nA: Rex is a wumpus. Each wumpus is hot. "
        "Rex is hot.",
        "Q: Every yumpus is snowy. Polly1 is a yumpus. Prove: Polly1 is snowy.\nA: Polly1 is a yumpus. Every yumpus "
        "is snowy. Polly1 is snowy.",
    )
    data = tmp_path / "pq.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "ft.yaml"
    assert write_prontoqa_finetune(data, out, 2) == 5 + 4  # 6 worked examples less the one, 2 test questions a rule
    (suite,) = load_suites([out])
    split = split_suite(suite)
    assert split.source == "file"
    assert [i.id for i in split.test] == [f"prontoqa_ood_{r}_{k}" for r in ("ModusPonens", "OrElim") for k in (0, 1)]
    assert "prontoqa_ood_ModusPonens_2_shot1" not in {i.id for i in split.train + split.validation}
    assert not {content_hash(i) for i in split.train + split.validation} & {content_hash(i) for i in suite.items[5:]}
    test = split.test[1]
    assert test.input == "Q: Every yumpus is snowy. Polly1 is a yumpus. Prove: Polly1 is snowy.\nA:"
    assert render_prompt(suite, test, "direct").text == test.input  # 0-shot: the question alone
    first = next(i for i in split.train + split.validation if i.id == "prontoqa_ood_ModusPonens_0_shot1")
    assert (first.input, first.answer, first.category) == (
        "Q: Each wumpus is hot. Rex is a wumpus. Prove: Rex is hot.\nA:",
        "Rex is a wumpus. Each wumpus is hot. Rex is hot.",
        "prontoqa_implication_elimination",
    )
    request = work_items(suite, "direct")[0].generation_request
    assert (request.max_tokens, request.stop, request.repetition_penalty) == (256, ("Q:",), 0.0001)
    # the held-out file fine-tuning writes keeps the study's decoding
    heldout = tmp_path / "heldout.yaml"
    heldout.write_text(json.dumps(heldout_document(split, "held")), encoding="utf-8")
    (held,) = load_suites([heldout])
    assert (held.max_tokens, held.stop, held.repetition_penalty, held.prompt_format) == (256, ("Q:",), 0.0001, "raw")


def test_a_prompt_whose_worked_example_is_not_a_question_and_proof_is_named(tmp_path: Path) -> None:
    bad = dict(PRONTOQA[1], question="Q: Each wumpus is hot.\n\nQ: Every yumpus is snowy. Prove: x.\nA:")
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(PRONTOQA[0]) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as caught:
        write_prontoqa_finetune(data, tmp_path / "out.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(data), 2, "question")
    assert "worked example 1" in problem.message


def test_the_shared_prontoqa_file_gives_the_studys_1800_worked_examples(tmp_path: Path) -> None:
    data = SHARED / "data" / "prontoqa_ood" / "normalized.jsonl"
    if not data.exists():
        pytest.skip("../shared/data/prontoqa_ood is not here")
    count = write_prontoqa_finetune(data, tmp_path / "ft.yaml", 10)
    (suite,) = load_suites([tmp_path / "ft.yaml"])
    split = split_suite(suite)
    assert len(split.test) == 60 and count == len(suite.items)
    trained = len(split.train) + len(split.validation)
    assert 1700 <= trained <= 1800 and 0.07 < len(split.validation) / trained < 0.13, (trained, len(split.validation))
    write_prontoqa_finetune(data, tmp_path / "subset.yaml", 10, 50)  # a subset for small machines
    subset = split_suite(load_suites([tmp_path / "subset.yaml"])[0])
    assert len(subset.train) + len(subset.validation) == 300 and len(subset.test) == 60
