"""The reasoning-depth probe: generated gold proofs pass the strict checker; the checker tells strict from lenient."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poccheck.pipeline import write_probe
from poccheck.probe import logic
from poccheck.probe.check import check_proof
from poccheck.probe.generate import RULES, make_problem, probe_suite
from poccheck.probe.logic import Assume, Atom, parse


@pytest.mark.parametrize("lang", ["en", "ja"])
@pytest.mark.parametrize("rule", list(RULES))
def test_gold_proofs_are_strictly_valid(rule: str, lang: str) -> None:
    for seed in range(8):
        for hops in (1, 2, 3, 5):
            problem = make_problem(rule, hops, lang, random.Random(seed), distractors=seed % 3)  # type: ignore[arg-type]
            checked = check_proof(problem.rationale, problem.premises, problem.goal, problem.name, lang)  # type: ignore[arg-type]
            assert checked.strict and checked.lenient, (problem, checked)


@pytest.mark.parametrize("rule", list(RULES))
def test_a_proof_with_a_skipped_step_is_only_leniently_right(rule: str) -> None:
    problem = make_problem(rule, 3, "en", random.Random(7))
    # drop the first derived step: the proof jumps ahead, as weak models do
    derived = [i for i, s in enumerate(problem.proof) if s.startswith("So ")]
    broken = [s for i, s in enumerate(problem.proof) if i != derived[0]]
    checked = check_proof(" ".join(broken), problem.premises, problem.goal, problem.name, "en")
    assert not checked.strict and checked.lenient


def test_crafted_outputs() -> None:
    premises = ["Every wumpus is a yumpus.", "Every yumpus is a zumpus.", "Sam is a wumpus."]
    goal = "Sam is a zumpus."
    good = (
        "Sam is a wumpus. Every wumpus is a yumpus. So Sam is a yumpus. Every yumpus is a zumpus. So Sam is a zumpus."
    )
    assert check_proof(good, premises, goal, "Sam", "en").strict
    only_goal = check_proof("Sam is a zumpus.", premises, goal, "Sam", "en")
    assert not only_goal.strict and only_goal.lenient  # the published study's lenient metric counts this
    invented = check_proof("Every wumpus is a zumpus. So Sam is a zumpus.", premises, goal, "Sam", "en")
    assert not invented.strict and invented.lenient and "Every wumpus is a zumpus." in invented.invalid_steps
    wrong = check_proof("Sam is a wumpus. So Sam is a dumpus.", premises, goal, "Sam", "en")
    assert not wrong.strict and not wrong.lenient
    chatter = check_proof(good + " I hope this helps!", premises, goal, "Sam", "en")
    assert not chatter.strict and chatter.lenient
    assert check_proof("", premises, goal, "Sam", "en").detail.key == "proof.none"


def test_contradiction_needs_a_real_contradiction() -> None:
    premises = ["Every wumpus is a yumpus.", "Sam is not a yumpus."]
    goal = "Sam is not a wumpus."
    proof = (
        "Assume Sam is a wumpus. Every wumpus is a yumpus. So Sam is a yumpus. This is a contradiction. "
        "So Sam is not a wumpus."
    )
    assert check_proof(proof, premises, goal, "Sam", "en").strict
    premature = "Assume Sam is a wumpus. This is a contradiction. So Sam is not a wumpus."
    checked = check_proof(premature, premises, goal, "Sam", "en")
    assert not checked.strict
    inside = check_proof("Assume Sam is a wumpus. Sam is not a wumpus.", premises, goal, "Sam", "en")
    assert inside.lenient and not inside.strict  # stated, but under an open assumption: not proved
    assumed = check_proof("Assume Sam is not a wumpus.", premises, goal, "Sam", "en")
    assert not assumed.lenient  # assuming the goal is not stating it


def test_japanese_crafted_outputs() -> None:
    premises = ["すべてのワンパスはヤンパスである。", "サムはワンパスである。"]
    goal = "サムはヤンパスである。"
    good = "サムはワンパスである。すべてのワンパスはヤンパスである。したがって、サムはヤンパスである。"
    assert check_proof(good, premises, goal, "サム", "ja").strict
    skipped = check_proof("したがって、サムはヤンパスである。", premises, goal, "サム", "ja")
    assert skipped.strict  # one modus ponens step from the premises is a valid one-step proof
    wrong = check_proof("サムはズンパスである。", premises, goal, "サム", "ja")
    assert not wrong.strict and not wrong.lenient


def test_suite_is_deterministic_and_loads(tmp_path: Path) -> None:
    first = probe_suite(list(RULES), [1, 2], 3, "en", seed=11, distractors=1)
    assert first == probe_suite(list(RULES), [1, 2], 3, "en", seed=11, distractors=1)
    assert first != probe_suite(list(RULES), [1, 2], 3, "en", seed=12, distractors=1)
    suite = write_probe(tmp_path / "p.yaml", list(RULES), [1, 2], 3, "ja", seed=11, shots=2)
    assert len(suite.items) == len(RULES) * 2 * 3 and len(suite.fewshot) == len(RULES) * 2
    assert {i.type for i in suite.items} == {"proof"} and {i.category for i in suite.items} == set(RULES)
    inputs = {i.input for i in suite.items}
    assert not any(ex.input in inputs for ex in suite.fewshot)  # exemplars are not test items


def test_a_goal_outside_the_fragment_is_never_reached_by_chatter() -> None:
    checked = check_proof("Let's think. Hmm.", ["Every wumpus is a yumpus."], "Sam dances.", "Sam", "en")
    assert not checked.lenient and not checked.strict


def test_a_reply_a_model_repeats_is_read_without_deep_recursion_or_quadratic_search() -> None:
    problem = make_problem("implication_elimination", 1, "en", random.Random(1))
    nested = "Assume " * 1_500 + f"{problem.name} is a wumpus."  # once parsed one "assume" at a time, recursively
    assert parse(nested, problem.name, "en") is None
    assert not check_proof(nested, problem.premises, problem.goal, problem.name, "en").lenient
    assert parse(f"Suppose that {problem.name} is a wumpus.", problem.name, "en") == Assume(Atom("wumpus"))
    for sentence in ("ボブは" + "か" * 10_000, "ボブは" + "であり、" * 2_500, "すべての" + "は" * 10_000):
        assert parse(sentence, "ボブ", "ja") is None  # each split point tried once, not each pair of them


@settings(derandomize=True, database=None, deadline=None, max_examples=500)
@given(st.text(alphabet="かはであるり、 x", max_size=14), st.booleans())
def test_japanese_patterns_split_sentences_as_the_lazy_patterns_did(text: str, rule: bool) -> None:
    text = "すべての" + text if rule else text
    lazy = {
        logic._JA_RULE: r"すべての(\S+?)は(\S+?)である",
        logic._JA_AND: r"(\S+?)であり、(\S+?)である",
        logic._JA_OR: r"(\S+?)か(\S+?)である",
    }
    for linear, pattern in lazy.items():
        found, expected = linear.fullmatch(text), re.fullmatch(pattern, text)
        assert (found and found.groups()) == (expected and expected.groups()), (text, pattern)
