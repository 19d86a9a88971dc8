"""The PrOntoQA-OOD proof checker: the published study's checker, ported, agreeing with the study's own verdicts.

``tests/data/prontoqa_smollm2_135m_study.jsonl`` holds the study's 600 SmolLM2-135M-Instruct 3-shot 1-hop answers
(100 per rule) with the study's verdicts, from its public repository ``AnnonymousForPapers/CoT_Reasoning_Test``
(MIT licence): answers from ``prontoqa/SmolLM2_135M_Instruct/3shot/`` logs, verdicts from the analyzer's lists of
incorrect proof ids in ``R-run_analyze_SmolLM2-135M-Instruct-3shot.sh_12237280.out`` (strict: a proof without skip
steps; lenient: with skip or non-atomic steps allowed, the study's "proof contains the correct proof").
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poccheck.grading.grade import grade_text
from poccheck.grading.prontoqa import And, Atom, ForAll, Func, Not, Or, check_prontoqa, parse_reasoning
from poccheck.pipeline import validate
from poccheck.records import PRONTOQA_CHECKER, TaskItem

from .test_loader_properties import PROFILE

STUDY = Path(__file__).parent / "data" / "prontoqa_smollm2_135m_study.jsonl"
QUESTION = "Every yumpus is snowy. Polly is a yumpus. Prove: Polly is snowy."
GOLD = "Polly is a yumpus. Every yumpus is snowy. Polly is snowy."


def study_rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in STUDY.read_text(encoding="utf-8").splitlines()]


def test_checker_agrees_with_the_study_on_its_own_600_answers() -> None:
    rows = study_rows()
    assert len(rows) == 600 and Counter(r["rule"] for r in rows) == dict.fromkeys(Counter(r["rule"] for r in rows), 100)
    differ = []
    ours = Counter[tuple[str, str]]()
    for row in rows:
        found = check_prontoqa(str(row["predicted"]), str(row["question"]), str(row["expected"]))
        ours[(str(row["rule"]), "strict")] += found.strict
        ours[(str(row["rule"]), "lenient")] += found.lenient
        for kind, verdict in (("strict", found.strict), ("lenient", found.lenient)):
            if verdict != row[f"study_{kind}"]:
                differ.append((row["rule"], row["n"], kind))
    # The one difference: "Lorpus are not wooden." (singular subject with "are"); the study's grammar, not shipped
    # in its repository, rejects the sentence and gives lenient only; poccheck reads it as the rule it states.
    assert differ == [("implication_elimination", 40, "strict")]
    # Lenient per rule, as in the study's v1 table (paper_results.csv, cot_3shot_1hop_v1): .70 .89 .90 .98 .13 .03
    lenient = {rule: ours[(rule, "lenient")] for rule, _ in ours if _ == "lenient"}
    assert lenient == {
        "implication_elimination": 70,
        "conjunction_introduction": 89,
        "conjunction_elimination": 90,
        "disjunction_introduction": 98,
        "disjunction_elimination": 13,
        "proof_by_contradiction": 3,
    }


@pytest.mark.parametrize(
    ("sentence", "formula"),
    [
        ("Wren is a sterpus.", Atom("sterpus", "Wren")),
        ("Alex is not a wumpus.", Not(Atom("wumpus", "Alex"))),
        ("Sterpuses are transparent.", ForAll(Atom("sterpus", "?x"), Atom("transparent", "?x"))),
        ("Every yumpus is not snowy.", ForAll(Atom("yumpus", "?x"), Not(Atom("snowy", "?x")))),
        ("Each sterpus is fruity.", ForAll(Atom("sterpus", "?x"), Atom("fruity", "?x"))),
        ("Alex is a wumpus and a jompus.", And((Atom("wumpus", "Alex"), Atom("jompus", "Alex")))),
        ("Alex is hot or cold.", Or((Atom("hot", "Alex"), Atom("cold", "Alex")))),
        (
            "Everything that is a wumpus or a jompus is hot.",
            ForAll(Or((Atom("wumpus", "?x"), Atom("jompus", "?x"))), Atom("hot", "?x")),
        ),
        ("Assume Alex is a wumpus.", Func("ASSUME", (Atom("wumpus", "Alex"),))),
        ("This contradicts with Alex is not hot.", Func("CONTRADICTS", (Not(Atom("hot", "Alex")),))),
        ("Since Alex is a wumpus, Alex is hot.", Func("SINCE", (Atom("wumpus", "Alex"), Atom("hot", "Alex")))),
        ("Therefore Alex is hot.", Func("THEREFORE", (Atom("hot", "Alex"),))),
    ],
)
def test_sentences_parse_to_their_logical_form(sentence: str, formula: object) -> None:
    assert parse_reasoning(sentence) == ([formula], 0)


def test_strict_lenient_and_wrong_proofs() -> None:
    assert check_prontoqa(GOLD, QUESTION, GOLD).strict
    skipped = check_prontoqa("Polly is a yumpus. Polly is snowy.", QUESTION, GOLD)  # the rule is used, not stated
    assert (skipped.strict, skipped.lenient) == (False, True)
    wrong = check_prontoqa("Polly is a yumpus. Every yumpus is not snowy. Polly is not snowy.", QUESTION, GOLD)
    assert (wrong.strict, wrong.lenient) == (False, False)
    # Only the last question of a few-shot prompt is the one to prove.
    shot = "Q: Each wumpus is hot. Rex is a wumpus. Prove: Rex is hot.\nA: Rex is a wumpus. Rex is hot.\n\n"
    prompt = f"{shot}Q: {QUESTION}\nA:"
    assert check_prontoqa(GOLD, prompt, GOLD).strict
    assert not check_prontoqa("Rex is a wumpus. Each wumpus is hot. Rex is hot.", prompt, GOLD).lenient


@pytest.mark.parametrize(
    "output",
    [
        "",
        "   ",
        "Polly is",
        "1,200,000,000,000,000,000,000,000,000,000,000,000,000.",
        "nan inf -inf 1e999",
        "\x00\x1b[31m Polly is a yumpus.\u202e",
        "Polly is a yumpus. " * 2_000,
        "Assume Polly is. This contradicts with. Since , . Therefore.",
        "Polly is a yumpus and and or or not not.",
        '{"proof": [1, 2',
    ],
)
def test_any_model_output_gets_a_verdict(output: str) -> None:
    found = check_prontoqa(output, QUESTION, GOLD)
    assert not found.strict and found.steps >= 0
    assert found.detail.key.startswith("proof.")


def test_proof_items_graded_by_the_study_checker() -> None:
    item = TaskItem(
        id="pq-1", input=f"Q: {QUESTION}\nA:", type="proof", answer=GOLD, metadata={"checker": PRONTOQA_CHECKER}
    )
    right = grade_text(item, " " + GOLD + "\n\n")
    assert right.correct and right.lenient
    skip = grade_text(item, "Polly is a yumpus. Polly is snowy.")
    assert not skip.correct and skip.lenient


def test_a_prontoqa_item_needs_its_goal_in_the_input(tmp_path: Path) -> None:
    path = tmp_path / "pq.jsonl"
    good = {
        "id": "a",
        "input": f"Q: {QUESTION}\nA:",
        "type": "proof",
        "answer": GOLD,
        "metadata": {"checker": "prontoqa"},
    }
    bad = {**good, "id": "b", "input": "Q: Every yumpus is snowy. Polly is a yumpus.\nA:"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    problems = validate([path]).problems
    assert len(problems) == 1
    assert problems[0].line == 2 and problems[0].field == "input" and "Prove:" in problems[0].message


# Qwen2.5-Coder-1.5B's answer to the study's proof-by-contradiction item 9 (3-shot, raw): the gold proof, then more
# steps until the 256-token budget cut it just after "This contradicts with ...". The port read the step after a
# contradiction unguarded and raised IndexError, which stopped the report after every result was stored.
CUT_AFTER_CONTRADICTION = (
    " Assume Max is an impus. Max is a rompus or an impus. Everything that is a rompus or an impus is a y"
    "umpus. Max is a yumpus. This contradicts with Max is not a yumpus. Max is not an impus.\n\n Assume Max"
    " is a rompus. Max is a rompus or an impus. Everything that is a rompus or an impus is a yumpus. Max "
    "is a yumpus. This contradicts with Max is not a yumpus. Max is not a rompus.\n\n Max is not an impus a"
    "nd Max is not a rompus. This is a tumpus. This contradicts with Max is not a yumpus. Max is not an i"
    "mpus. Max is not a rompus. This is a tumpus. This contradicts with Max is not a yumpus. Max is not a"
    "n impus. Max is not a rompus. This is a tumpus. This contradicts with Max is not a yumpus. Max is no"
    "t an impus. Max is not a rompus. This is a tumpus. This contradicts with Max is not a yumpus. Max is"
    " not an impus"
)
CONTRADICTION = (
    "Everything that is a rompus or an impus is a yumpus. Max is not a yumpus."
    " Prove: Max is not an impus and Max is not a rompus."
)
CONTRADICTION_GOLD = (
    "Assume Max is an impus. Max is a rompus or an impus. Everything that is a rompus or an impus is a yumpus. Max is"
    " a yumpus. This contradicts with Max is not a yumpus. Max is not an impus.\n\n Assume Max is a rompus. Max is a"
    " rompus or an impus. Everything that is a rompus or an impus is a yumpus. Max is a yumpus. This contradicts with"
    " Max is not a yumpus. Max is not a rompus.\n\n Max is not an impus and Max is not a rompus."
)


def test_a_proof_cut_off_after_a_contradiction_gets_a_verdict() -> None:
    found = check_prontoqa(CUT_AFTER_CONTRADICTION, CONTRADICTION, CONTRADICTION_GOLD)
    assert found.strict and found.steps == 27  # the gold proof comes first: the study's checker accepts it
    alone = check_prontoqa("This contradicts with Max is not a yumpus.", CONTRADICTION, CONTRADICTION_GOLD)
    assert not alone.lenient
    looped = "Assume Max is an impus. This contradicts with Max is not a yumpus. Max is not an impus."
    found = check_prontoqa(f"{looped} This contradicts with Max is not a yumpus.", CONTRADICTION, CONTRADICTION_GOLD)
    assert (found.strict, found.lenient, found.steps) == (False, False, 4)  # the smallest shape that raised


def sentences(text: str) -> list[str]:
    return [s.strip() for s in text.replace("Prove:", ".").split(".") if s.strip()]


@st.composite
def proof_like(draw: st.DrawFn, row: dict[str, object]) -> str:
    """A model's proof as the ladder writes them: a walk along the gold proof's steps that mostly takes the next
    one and sometimes jumps back or ahead (small models go round again), with now and then a sentence of the
    question or of the model's own answer put in, a step negated or reframed, cut off at any step or character."""
    steps = sentences(str(row["expected"]))
    others = sentences(f"{row['question']} {row['predicted']}") or steps
    out: list[str] = []
    at = 0
    for _ in range(draw(st.integers(1, 2 * len(steps) + 2))):
        at = at + 1 if at + 1 < len(steps) and draw(st.integers(0, 2)) else draw(st.integers(0, len(steps) - 1))
        step = steps[at]
        match draw(st.integers(0, 11)):
            case 0:
                step = step.replace(" is ", " is not ", 1)
            case 1:
                step = f"Assume {step[0].lower()}{step[1:]}"
            case 2:
                step = f"This contradicts with {step}"
            case 3:
                step = draw(st.sampled_from(others))
            case _:
                pass
        out.append(step)
    text = " " + ". ".join(out) + "."
    return text[: len(text) - draw(st.integers(0, 30))] if draw(st.booleans()) else text


@settings(PROFILE, max_examples=200)
@given(data=st.data(), rule=st.sampled_from(sorted({str(r["rule"]) for r in study_rows()})))
def test_any_proof_built_from_an_items_own_sentences_gets_a_verdict(data: st.DataObject, rule: str) -> None:
    rows = [r for r in study_rows() if r["rule"] == rule]
    row = data.draw(st.sampled_from(rows[:20]))
    output = data.draw(proof_like(row))
    found = check_prontoqa(output, str(row["question"]), str(row["expected"]))
    assert found.strict <= found.lenient and found.steps >= 0
