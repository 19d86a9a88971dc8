"""Generate deductive reasoning problems over a fictional ontology (so no model knows the answers).

Six rules, as in PrOntoQA-OOD: implication elimination (modus ponens), conjunction introduction and
elimination, disjunction introduction and elimination (proof by cases), and proof by contradiction. A
problem of ``hops`` steps chains ``hops - 1`` modus ponens steps with one application of its rule (for
implication elimination, ``hops`` modus ponens steps). Optional distractor rules mention unrelated concepts.
Every problem carries its gold proof, which the strict checker accepts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from poccheck.probe.logic import And, Assume, Atom, Contradiction, Language, Or, Rule, Statement, render

RULES = {
    "implication_elimination": "IE",
    "conjunction_introduction": "CI",
    "conjunction_elimination": "CE",
    "disjunction_introduction": "DI",
    "disjunction_elimination": "DE",
    "proof_by_contradiction": "PC",
}
CONCEPTS = {
    "en": [
        "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus", "jompus",
        "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus", "brimpus", "quimpus", "felpus", "tarpus",
        "orpus", "welpus", "kempus", "hilpus",
    ],
    "ja": [
        "ワンパス", "ヤンパス", "ズンパス", "ダンパス", "ロンパス", "ナンパス", "タンパス", "ヴァンパス", "インパス",
        "ジョンパス", "ゴーパス", "シャンパス", "レンパス", "ステルパス", "グリンパス", "ローパス", "ブリンパス",
        "クインパス", "フェルパス", "ターパス", "オーパス", "ウェルパス", "ケンパス", "ヒルパス",
    ],
}  # fmt: skip
NAMES = {
    "en": ["Sam", "Max", "Alex", "Rex", "Fae", "Polly", "Wren", "Stella"],
    "ja": ["サム", "マックス", "アレックス", "レックス", "フェイ", "ポリー", "レン", "ステラ"],
}
PROMPT = {"en": ("{premises} Prove: {goal}", "So "), "ja": ("{premises} 次を証明せよ: {goal}", "したがって、")}


@dataclass
class Problem:
    rule: str
    hops: int
    lang: Language
    name: str
    premises: list[str]
    goal: str
    proof: list[str] = field(default_factory=list)

    @property
    def input(self) -> str:
        template, _ = PROMPT[self.lang]
        return template.format(premises=" ".join(self.premises), goal=self.goal)

    @property
    def rationale(self) -> str:
        return " ".join(self.proof) if self.lang == "en" else "".join(self.proof)


class _Builder:
    def __init__(self, rng: random.Random, lang: Language, name: str, concepts: list[str]) -> None:
        self.rng, self.lang, self.name = rng, lang, name
        self.pool = list(concepts)
        rng.shuffle(self.pool)
        self.premises: list[Statement] = []
        self.proof: list[str] = []

    def concept(self) -> str:
        return self.pool.pop()

    def say(self, statement: Statement, so: bool = False) -> None:
        text = render(statement, self.name, self.lang)
        if so:
            prefix = PROMPT[self.lang][1]
            text = prefix + text
        self.proof.append(text)

    def chain(self, start: str, steps: int) -> str:
        """Premise rules start → c1 → ... (``steps`` of them) and the modus ponens proof; returns the end."""
        current = start
        for _ in range(steps):
            nxt = self.concept()
            rule = Rule(current, nxt)
            self.premises.append(rule)
            self.say(rule)
            self.say(Atom(nxt), so=True)
            current = nxt
        return current


def make_problem(rule: str, hops: int, lang: Language, rng: random.Random, distractors: int = 0) -> Problem:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if hops < 1:
        raise ValueError("hops must be at least 1")
    name = rng.choice(NAMES[lang])
    b = _Builder(rng, lang, name, CONCEPTS[lang])
    goal: Statement
    if rule == "implication_elimination":
        start = b.concept()
        b.premises.append(Atom(start))
        b.say(Atom(start))
        goal = Atom(b.chain(start, hops))
    elif rule == "conjunction_introduction":
        start, other = b.concept(), b.concept()
        b.premises += [Atom(start), Atom(other)]
        b.say(Atom(start))
        end = b.chain(start, hops - 1)
        b.say(Atom(other))
        goal = And(Atom(end), Atom(other))
        b.say(goal, so=True)
    elif rule == "conjunction_elimination":
        left, right = b.concept(), b.concept()
        b.premises.append(And(Atom(left), Atom(right)))
        b.say(And(Atom(left), Atom(right)))
        b.say(Atom(right), so=True)
        goal = Atom(b.chain(right, hops - 1))
    elif rule == "disjunction_introduction":
        start, other = b.concept(), b.concept()
        b.premises.append(Atom(start))
        b.say(Atom(start))
        end = b.chain(start, hops - 1)
        goal = Or(Atom(end), Atom(other))
        b.say(goal, so=True)
    elif rule == "disjunction_elimination":
        left, right, joint = b.concept(), b.concept(), b.concept()
        b.premises += [Or(Atom(left), Atom(right)), Rule(left, joint), Rule(right, joint)]
        for case in (left, right):
            b.say(Assume(Atom(case)))
            b.say(Rule(case, joint))
            b.say(Atom(joint), so=True)
        b.say(Atom(joint), so=True)
        b.proof[-1] = _since(b, Or(Atom(left), Atom(right)), Atom(joint))
        goal = Atom(b.chain(joint, hops - 1))
    else:  # proof_by_contradiction
        start = b.concept()
        b.say(Assume(Atom(start)))
        end = b.chain(start, hops)
        b.premises.append(Atom(end, negated=True))
        b.say(Contradiction())
        goal = Atom(start, negated=True)
        b.say(goal, so=True)
    for _ in range(distractors):
        b.premises.append(Rule(b.concept(), b.concept()))
    premises = [render(p, name, lang) for p in b.premises]
    rng.shuffle(premises)
    return Problem(rule, hops, lang, name, premises, render(goal, name, lang), b.proof)


def _since(b: _Builder, disjunction: Or, conclusion: Atom) -> str:
    fact = render(disjunction, b.name, b.lang).rstrip(".。")
    result = render(conclusion, b.name, b.lang)
    return f"Since {fact}, {result}" if b.lang == "en" else f"{fact}ので、{result}"


def probe_suite(
    rules: Sequence[str],
    hops: Sequence[int],
    n: int,
    lang: Language,
    seed: int = 0,
    distractors: int = 0,
    shots: int = 3,
) -> dict[str, Any]:
    """A YAML-ready suite: ``n`` problems per rule and hop count, and ``shots`` exemplars per rule."""
    rng = random.Random(seed)
    items = []
    for rule in rules:
        for hop in hops:
            for index in range(n):
                problem = make_problem(rule, hop, lang, rng, distractors)
                items.append(
                    {
                        "id": f"{RULES[rule].lower()}-h{hop}-{index + 1:03d}",
                        "type": "proof",
                        "category": rule,
                        "input": problem.input,
                        "answer": problem.goal,
                        "metadata": {
                            "rule": rule, "hops": hop, "lang": lang, "name": problem.name,
                            "premises": problem.premises, "rationale": problem.rationale,
                        },
                    }
                )  # fmt: skip
    exemplar_rng = random.Random(seed + 1_000_003)
    fewshot = []
    for rule in rules:
        for _ in range(shots):
            problem = make_problem(rule, 1, lang, exemplar_rng, distractors)
            fewshot.append(
                {"input": problem.input, "answer": problem.goal, "rationale": problem.rationale, "category": rule}
            )
    return {
        "name": f"probe-{lang}",
        "description": (
            f"Deductive reasoning probe over a fictional ontology: rules {', '.join(rules)}; hops "
            f"{', '.join(map(str, hops))}; {n} per rule and hop; seed {seed}; distractors {distractors}."
        ),
        "language": lang,
        "max_tokens": 64 + 32 * max(hops),  # longest gold proofs: ~80 tokens + ~17 a hop
        "stop": ["\n\n", "\nQ:"],
        # a proof is written as one paragraph in every mode (the study's protocol): it ends at the first blank line
        "cot_max_tokens": 64 + 32 * max(hops),
        "cot_stop": ["\n\n", "\nQ:"],
        "fewshot": fewshot,
        "items": items,
    }
