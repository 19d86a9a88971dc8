"""Check a model's proof against the premises: strictly (every step is one rule application) and leniently.

Strict: every sentence is a premise restated, or follows from premises and earlier steps by exactly one
application of modus ponens, conjunction introduction or elimination, disjunction introduction or
elimination (proof by cases), or proof by contradiction; assumptions open a case that a contradiction or a
completed pair of cases closes; and the goal is reached outside any assumption. A sentence outside the
fragment is an invalid step.

Lenient (the published study's headline metric): the goal is stated as a fact (not merely assumed), whatever
the steps before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from poccheck.i18n import Message
from poccheck.probe.logic import (
    And,
    Assume,
    Atom,
    Contradiction,
    Fact,
    Language,
    Or,
    Rule,
    Statement,
    parse,
    sentences,
)


@dataclass(frozen=True)
class ProofCheck:
    strict: bool
    lenient: bool
    steps: int
    invalid_steps: tuple[str, ...]

    @property
    def detail(self) -> Message:
        if self.strict:
            return Message.of("proof.valid")
        if not self.steps:
            return Message.of("proof.none")
        reached = "reached" if self.lenient else "not_reached"
        if self.invalid_steps:
            return Message.of(f"proof.{reached}_invalid", steps="; ".join(self.invalid_steps[:3]))
        return Message.of(f"proof.{reached}")


def check_proof(output: str, premises: Sequence[str], goal: str, name: str, lang: Language) -> ProofCheck:
    parsed_premises = [parse(p, name, lang) for p in premises]
    rules = {s for s in parsed_premises if isinstance(s, Rule)}
    target = parse(goal, name, lang)
    proof = _Proof({s for s in parsed_premises if isinstance(s, Atom | And | Or)}, rules)
    invalid: list[str] = []
    reached_strict = reached_lenient = False
    steps = 0
    for sentence in sentences(output):
        steps += 1
        statement = parse(sentence, name, lang)
        valid = statement is not None and proof.step(statement)
        if not valid:
            invalid.append(sentence)
        if target is not None and statement == target:
            reached_lenient = True  # stated as a fact, at any depth, however it was reached
            reached_strict = reached_strict or (valid and proof.depth == 0)
    return ProofCheck(reached_strict and not invalid, reached_lenient, steps, tuple(invalid))


class _Proof:
    """The state of a proof being read: facts known at each assumption depth, and finished cases."""

    def __init__(self, facts: set[Fact], rules: set[Rule]) -> None:
        self.rules = rules
        self.frames: list[tuple[Atom | None, set[Fact]]] = [(None, set(facts))]
        self.cases: list[tuple[Atom, set[Fact]]] = []  # finished cases, awaiting disjunction elimination

    @property
    def depth(self) -> int:
        return len(self.frames) - 1

    def step(self, statement: Statement) -> bool:
        assumption, known = self.frames[-1]
        if isinstance(statement, Rule):
            return statement in self.rules  # restating a premise rule
        if isinstance(statement, Assume):
            if assumption is not None and not _contradictory(known):
                self.frames.pop()  # a new case begins: the previous one is finished
                self.cases.append((assumption, known))
                assumption, known = self.frames[-1]
            self.frames.append((statement.fact, set(known) | {statement.fact}))
            return True
        if isinstance(statement, Contradiction):
            if assumption is None or not _contradictory(known):
                return False
            self.frames.pop()
            self.frames[-1][1].add(assumption.negate())  # proof by contradiction: the assumption is false
            return True
        if assumption is not None and self._by_cases(statement, assumption, known):
            return True
        if _follows(statement, known, self.rules):
            known.add(statement)
            return True
        return False

    def _by_cases(self, fact: Fact, assumption: Atom, known: set[Fact]) -> bool:
        """Disjunction elimination: ``fact`` holds in this case and in a finished case, and one of the two
        cases holds outside (``A or B``): conclude ``fact`` outside both."""
        if fact not in known:
            return False
        outer = self.frames[-2][1]
        for other, other_known in self.cases:
            if fact in other_known and (Or(other, assumption) in outer or Or(assumption, other) in outer):
                self.frames.pop()
                self.cases.clear()
                outer.add(fact)
                return True
        return False


def _contradictory(facts: set[Fact]) -> bool:
    return any(isinstance(f, Atom) and f.negate() in facts for f in facts)


def _follows(fact: Fact, known: set[Fact], rules: set[Rule]) -> bool:
    """Known already (restated), or one rule application away."""
    if fact in known:
        return True
    if isinstance(fact, Atom):
        if not fact.negated and any(r.conclusion == fact.concept and Atom(r.premise) in known for r in rules):
            return True  # modus ponens
        return any(isinstance(k, And) and fact in (k.left, k.right) for k in known)  # conjunction elimination
    if isinstance(fact, And):
        return fact.left in known and fact.right in known  # conjunction introduction
    return fact.left in known or fact.right in known  # disjunction introduction
