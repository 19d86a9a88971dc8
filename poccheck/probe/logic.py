"""A small first-order fragment over one individual, written as English or Japanese sentences.

Facts are about one named individual: ``Sam is a wumpus`` (an atom), ``Sam is not a wumpus`` (a negated atom),
``Sam is a wumpus and a yumpus`` (a conjunction), ``Sam is a wumpus or a yumpus`` (a disjunction). Rules are
universal implications between concepts: ``Every wumpus is a yumpus``. Sentences render and parse in both
languages with fixed templates, so a checker can read a model's proof step by step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Language = Literal["en", "ja"]


@dataclass(frozen=True, order=True)
class Atom:
    concept: str
    negated: bool = False

    def negate(self) -> Atom:
        return Atom(self.concept, not self.negated)


@dataclass(frozen=True)
class And:
    left: Atom
    right: Atom


@dataclass(frozen=True)
class Or:
    left: Atom
    right: Atom


Fact = Atom | And | Or


@dataclass(frozen=True)
class Rule:
    """Every ``premise`` is a ``conclusion``."""

    premise: str
    conclusion: str


@dataclass(frozen=True)
class Assume:
    fact: Atom


@dataclass(frozen=True)
class Contradiction:
    """ "This contradicts ...": the current assumption led to a fact and its negation."""


Statement = Atom | And | Or | Rule | Assume | Contradiction


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def render(statement: Statement, name: str, lang: Language) -> str:
    """One sentence, with its final full stop."""
    if lang == "ja":
        return _render_ja(statement, name)
    if isinstance(statement, Rule):
        return f"Every {statement.premise} is {_article(statement.conclusion)} {statement.conclusion}."
    if isinstance(statement, Assume):
        return f"Assume {render(statement.fact, name, lang)}"
    if isinstance(statement, Contradiction):
        return "This is a contradiction."
    if isinstance(statement, Atom):
        neg = "not " if statement.negated else ""
        return f"{name} is {neg}{_article(statement.concept)} {statement.concept}."
    joiner = "and" if isinstance(statement, And) else "or"
    return f"{name} is {_phrase(statement.left)} {joiner} {_phrase(statement.right)}."


def _phrase(atom: Atom) -> str:
    return f"{'not ' if atom.negated else ''}{_article(atom.concept)} {atom.concept}"


def _render_ja(statement: Statement, name: str) -> str:
    if isinstance(statement, Rule):
        return f"すべての{statement.premise}は{statement.conclusion}である。"
    if isinstance(statement, Assume):
        return f"{name}が{_ja_core(statement.fact)}と仮定する。"
    if isinstance(statement, Contradiction):
        return "これは矛盾である。"
    return f"{name}は{_ja_core(statement)}。"


def _ja_core(fact: Fact) -> str:
    if isinstance(fact, Atom):
        return f"{fact.concept}{'ではない' if fact.negated else 'である'}"
    if isinstance(fact, And):
        return f"{fact.left.concept}であり、{fact.right.concept}である"
    return f"{fact.left.concept}か{fact.right.concept}である"


# ------------------------------------------------------------------ parsing

_EN_CONNECTIVES = re.compile(
    r"^(?:so|therefore|thus|hence|then|and so|it follows that|we know that|since .*?,)\s*,?\s*", re.IGNORECASE
)
_EN_ASSUME = re.compile(r"(?:assume|suppose) (?:that )?(.*)", re.IGNORECASE)
_JA_CONNECTIVES = re.compile(r"^(?:したがって|よって|ゆえに|つまり|そのため|だから|従って|.*?ので|.*?から)[、,]?\s*")

# "(\S+?)は(\S+?)である" and the like, matched in linear time: the first part ends at the first separator after
# its first character (what the lazy group chooses) and the second runs to the end (the match is a fullmatch),
# so a long sentence of separators a model repeats is no quadratic search.
_JA_RULE = re.compile(r"すべての(\S[^\sは]*)は(\S+)である")
_JA_AND = re.compile(r"(\S(?:(?!であり、)\S)*)であり、(\S+)である")
_JA_OR = re.compile(r"(\S[^\sか]*)か(\S+)である")


def sentences(text: str) -> list[str]:
    """Split a proof into sentences (English full stops and Japanese 。)."""
    parts = re.split(r"(?<=[.。])\s*|\n+", text)
    return [p.strip() for p in parts if p and p.strip() and p.strip() not in {".", "。"}]


def parse(sentence: str, name: str, lang: Language) -> Statement | None:
    """Read one sentence back into a statement; None when it is not in the fragment."""
    return _parse_ja(sentence, name) if lang == "ja" else _parse_en(sentence, name)


def _en_clause(sentence: str) -> str:
    """A sentence without its full stop and its leading connective ("so", "since ..., ")."""
    return _EN_CONNECTIVES.sub("", sentence.strip().rstrip(".").strip()).strip()


def _parse_en(sentence: str, name: str) -> Statement | None:
    text = _en_clause(sentence)
    if re.fullmatch(r"(?:this|that) (?:is a contradiction|contradicts .*)", text, re.IGNORECASE):
        return Contradiction()
    match = re.fullmatch(r"(?:every|each) (\w+) is (?:an? )?(\w+)", text, re.IGNORECASE)
    if match:
        return Rule(match.group(1).lower(), match.group(2).lower())
    match = _EN_ASSUME.fullmatch(text)
    if match:
        if _EN_ASSUME.fullmatch(_en_clause(match.group(1))):
            return None  # an assumption of an assumption: not in the fragment (and no recursion a model can deepen)
        inner = _parse_en(match.group(1), name)
        return Assume(inner) if isinstance(inner, Atom) else None
    match = re.fullmatch(rf"{re.escape(name)} is (.+)", text, re.IGNORECASE)
    if not match:
        return None
    body = match.group(1)
    for joiner, kind in ((" and ", And), (" or ", Or)):
        if joiner in body:
            left, _, right = body.partition(joiner)
            a, b = _en_phrase(left), _en_phrase(right)
            return kind(a, b) if a and b else None
    return _en_phrase(body)


def _en_phrase(text: str) -> Atom | None:
    match = re.fullmatch(r"(not )?(?:an? )?(\w+)", text.strip(), re.IGNORECASE)
    return Atom(match.group(2).lower(), bool(match.group(1))) if match else None


def _parse_ja(sentence: str, name: str) -> Statement | None:
    text = sentence.strip().rstrip("。.").strip()
    text = _JA_CONNECTIVES.sub("", text).strip()
    if re.fullmatch(r"(?:これ|それ)は矛盾(?:である|だ|する)?|矛盾(?:する|である)", text):
        return Contradiction()
    match = _JA_RULE.fullmatch(text)
    if match:
        return Rule(match.group(1), match.group(2))
    match = re.fullmatch(rf"{re.escape(name)}が(.+)と仮定する", text)
    if match:
        inner = _ja_body(match.group(1))
        return Assume(inner) if isinstance(inner, Atom) else None
    match = re.fullmatch(rf"{re.escape(name)}は(.+)", text)
    return _ja_body(match.group(1)) if match else None


def _ja_body(body: str) -> Fact | None:
    match = _JA_AND.fullmatch(body)
    if match:
        return And(Atom(match.group(1)), Atom(match.group(2)))
    match = _JA_OR.fullmatch(body)
    if match:
        return Or(Atom(match.group(1)), Atom(match.group(2)))
    match = re.fullmatch(r"(\S+?)(ではない|でない|である)", body)
    if match:
        return Atom(match.group(1), match.group(2) != "である")
    return None
