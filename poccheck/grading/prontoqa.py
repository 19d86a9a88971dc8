"""The published study's PrOntoQA-OOD proof checker, ported: strict and lenient proof correctness.

The study (Hsiao & Dutta 2025) grades a model's proof with PrOntoQA's ``evaluate_response`` (Saparov & He 2023,
``run_experiment.py`` in the study's repository, MIT licence): every sentence of the proof is parsed into
first-order logic, each step is checked against the axioms and the earlier steps, and the proof counts as

- **strict** ("strictly correct") when the goal is reached by a valid atomic deduction step whose premises were
  stated (an axiom may be restated; no hypothesis left open), and
- **lenient** (the study's headline figure) when the goal is also reached by "non-atomic" steps (a premise used
  without being stated, modus tollens, several rules in one) or "skip" steps (an unstated rule provable from the
  axioms in at most two steps).

Upstream the English is parsed by PrOntoQA's grammar modules, which the study's repository does not ship; this
module parses PrOntoQA's own sentence forms ("Wren is a spicy tumpus.", "Each impus is a yumpus.", "Sterpuses are
transparent.", "Everything that is a jompus or an impus is a yumpus.", "Assume ...", "Since A, B.", "This
contradicts with A."). The step checker follows upstream branch for branch; the one deliberate change is that a
step upstream would reject with ``RuntimeError`` counts as an incorrect step here, so no model output can stop a
report. ``tests/test_prontoqa.py`` checks the port against the study's own SmolLM2-135M-Instruct logs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from poccheck.i18n import Message

VAR = "?x"


@dataclass(frozen=True)
class Atom:
    pred: str
    arg: str


@dataclass(frozen=True)
class Not:
    op: Formula


@dataclass(frozen=True)
class And:
    ops: tuple[Formula, ...]


@dataclass(frozen=True)
class Or:
    ops: tuple[Formula, ...]


@dataclass(frozen=True)
class ForAll:
    """``for all x: antecedent(x) -> consequent(x)``, the only quantified form PrOntoQA writes."""

    antecedent: Formula
    consequent: Formula


@dataclass(frozen=True)
class Func:
    """A proof connective: ASSUME, SINCE, THEREFORE, HOWEVER, CONTRADICTS."""

    name: str
    args: tuple[Formula, ...]


Formula = Atom | Not | And | Or | ForAll | Func
Ref = int | Formula  # a premise: the index of a proof step, or an axiom used without being stated


@dataclass(frozen=True)
class ProofCheck:
    strict: bool
    lenient: bool
    steps: int
    correct_steps: int
    parse_errors: int

    @property
    def detail(self) -> Message:
        if self.strict:
            return Message.of("proof.valid")
        if not self.steps:
            return Message.of("proof.none")
        return Message.of("proof.reached" if self.lenient else "proof.not_reached")


# ---------------------------------------------------------------- parsing PrOntoQA English


class ParseError(ValueError):
    pass


def _singular(word: str) -> str:
    """``sterpuses`` -> ``sterpus``, ``cats`` -> ``cat``, ``lorpus`` (a singular written for the plural) as is."""
    if word.endswith("uses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("us") and len(word) > 1:
        return word[:-1]
    return word


def _plural_predicate(tokens: list[str]) -> list[str]:
    """The predicate of ``Sterpuses are dumpuses``: PrOntoQA's nouns end in -us, so a word in -uses is a plural noun
    (adjectives such as "nervous" do not end so)."""
    return [word[:-2] if word.endswith("uses") else word for word in tokens]


def _split(tokens: list[str], word: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == word:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _simple_predicate(tokens: list[str], subject: str) -> Formula:
    if not tokens:
        raise ParseError("empty predicate")
    if tokens[0] == "not":
        return Not(_simple_predicate(tokens[1:], subject))
    if tokens[0] in ("a", "an"):
        words = tokens[1:]
        if not words:
            raise ParseError("article without a noun")
        if len(words) == 1:
            return Atom(words[0], subject)
        return And(tuple(Atom(w, subject) for w in words))
    if len(tokens) == 1:
        return Atom(tokens[0], subject)
    return And(tuple(Atom(w, subject) for w in tokens))  # "Sam is metallic yumpus", an article left out


def _predicate(tokens: list[str], subject: str) -> Formula:
    """``opaque or a wumpus``, ``a jompus or an impus``, ``not a yumpus``, ``a spicy tumpus``."""
    ors = _split(tokens, "or")
    if len(ors) > 1:
        return Or(tuple(_simple_predicate(part, subject) for part in ors))
    ands = _split(tokens, "and")
    if len(ands) > 1:
        return And(tuple(_simple_predicate(part, subject) for part in ands))
    return _simple_predicate(tokens, subject)


def _is_name(token: str) -> bool:
    return token[:1].isupper()


def _clauses(tokens: list[str], word: str) -> list[list[str]] | None:
    """Split ``Max is not an impus and Max is not a jompus`` into whole clauses, if it is one."""
    parts: list[list[str]] = [[]]
    for i, token in enumerate(tokens):
        if token == word and i + 2 < len(tokens) and _is_name(tokens[i + 1]) and tokens[i + 2] == "is":
            parts.append([])
        else:
            parts[-1].append(token)
    return parts if len(parts) > 1 else None


def _statement(tokens: list[str]) -> Formula:
    if len(tokens) < 3:
        raise ParseError(f"too short: {' '.join(tokens)!r}")
    for word, join in (("or", Or), ("and", And)):
        clauses = _clauses(tokens, word)
        if clauses is not None:
            return join(tuple(_statement(c) for c in clauses))
    first = tokens[0].lower()
    if first in ("every", "each") and len(tokens) >= 4 and tokens[2] == "is":
        return ForAll(Atom(tokens[1].lower(), VAR), _predicate(_lower(tokens[3:]), VAR))
    if first == "everything" and tokens[1:3] == ["that", "is"]:
        rest = _lower(tokens[3:])
        if "is" not in rest:
            raise ParseError("universal without 'is'")
        cut = rest.index("is")
        return ForAll(_predicate(rest[:cut], VAR), _predicate(rest[cut + 1 :], VAR))
    if tokens[1] == "are":
        return ForAll(Atom(_singular(first), VAR), _predicate(_plural_predicate(_lower(tokens[2:])), VAR))
    if first == "all" and len(tokens) >= 4 and tokens[2] == "are":
        return ForAll(Atom(_singular(tokens[1].lower()), VAR), _predicate(_plural_predicate(_lower(tokens[3:])), VAR))
    if _is_name(tokens[0]) and tokens[1] == "is":
        return _predicate(_lower(tokens[2:]), tokens[0])
    raise ParseError(f"cannot read {' '.join(tokens)!r}")


def _lower(tokens: list[str]) -> list[str]:
    return [t.lower() for t in tokens]


def parse_sentence(tokens: list[str]) -> Formula:
    """One sentence (its tokens, without the closing period) as a formula; ``ParseError`` if it is not PrOntoQA's."""
    if not tokens:
        raise ParseError("empty sentence")
    first = tokens[0].lower()
    if first == "assume":
        return Func("ASSUME", (_statement(tokens[1:]),))
    if first == "since" and "," in tokens:
        cut = tokens.index(",")
        return Func("SINCE", (_statement(tokens[1:cut]), _statement(tokens[cut + 1 :])))
    if first in ("therefore", "so", "thus", "hence", "however"):
        rest = tokens[2:] if len(tokens) > 1 and tokens[1] == "," else tokens[1:]
        return Func("HOWEVER" if first == "however" else "THEREFORE", (_statement(rest),))
    if _lower(tokens[:3]) == ["this", "contradicts", "with"]:
        return Func("CONTRADICTS", (_statement(tokens[3:]),))
    if _lower(tokens) == ["this", "is", "a", "contradiction"]:
        return Func("CONTRADICTS", ())
    return _statement(tokens)


def parse_reasoning(text: str) -> tuple[list[Formula], int]:
    """The sentences of ``text`` that parse, in order, and how many did not (upstream drops those too)."""
    tokens = re.findall(r"[\w\-]+|[^\w\s]", text)
    start = 0
    formulas: list[Formula] = []
    errors = 0
    for end, token in enumerate(tokens):
        if token in (".", ";"):
            try:
                formulas.append(parse_sentence(tokens[start:end]))
            except ParseError:
                errors += 1
            start = end + 1
    return formulas, errors


_LABELS = {"true", "t", "yes", "y", "correct", "right", "false", "f", "no", "n", "incorrect", "wrong"}


def response_proof(response: str) -> tuple[list[Formula], int]:
    """The proof in a model's response, read as upstream's ``parse_response`` does: cut at the next ``Q:``, up to
    the last full sentence."""
    index = response.find("Q:")
    if index != -1:
        response = response[:index]
    response = response.rstrip()
    label_index = response.rfind(" ")
    last_period = response.rfind(".")
    if last_period > label_index:
        possible = response[label_index:last_period].strip().lower()
        if possible not in _LABELS:
            label_index = last_period + 1
    return parse_reasoning(response[:label_index])


# ---------------------------------------------------------------- formulas


def substitute(formula: Formula, constant: str) -> Formula:
    if isinstance(formula, Atom):
        return Atom(formula.pred, constant) if formula.arg == VAR else formula
    if isinstance(formula, Not):
        return Not(substitute(formula.op, constant))
    if isinstance(formula, And):
        return And(tuple(substitute(op, constant) for op in formula.ops))
    if isinstance(formula, Or):
        return Or(tuple(substitute(op, constant) for op in formula.ops))
    if isinstance(formula, ForAll):
        return formula
    return Func(formula.name, tuple(substitute(a, constant) for a in formula.args))


def unify(ground: Formula, pattern: Formula, binding: dict[str, str]) -> bool:
    """Whether ``pattern`` (with the variable) matches ``ground``; binds the variable in ``binding``."""
    if isinstance(pattern, Atom) and isinstance(ground, Atom):
        if pattern.pred != ground.pred:
            return False
        if pattern.arg != VAR:
            return pattern.arg == ground.arg
        if VAR in binding:
            return binding[VAR] == ground.arg
        binding[VAR] = ground.arg
        return True
    if isinstance(pattern, Not) and isinstance(ground, Not):
        return unify(ground.op, pattern.op, binding)
    if isinstance(pattern, And | Or) and type(pattern) is type(ground):
        assert isinstance(ground, And | Or)
        if len(pattern.ops) != len(ground.ops):
            return False
        return all(unify(g, p, binding) for g, p in zip(ground.ops, pattern.ops, strict=True))
    return pattern == ground


def _neg(formula: Formula) -> Formula:
    return formula.op if isinstance(formula, Not) else Not(formula)


def negate(formula: Formula) -> Formula:
    if isinstance(formula, Not):
        return formula.op
    if isinstance(formula, And):
        return Or(tuple(_neg(op) for op in formula.ops))
    if isinstance(formula, Or):
        return And(tuple(_neg(op) for op in formula.ops))
    return Not(formula)


def _rindex(items: Sequence[Formula], element: Formula) -> int:
    return len(items) - 1 - list(items)[::-1].index(element)


# ---------------------------------------------------------------- the step checker (upstream is_provable & co.)

Found = tuple[int | None, bool, bool, bool, list[Ref]]
Provable = tuple[int | None, bool, bool, bool, list[Ref], list[Formula]]


@dataclass
class _State:
    axioms: list[Formula]
    proof: list[Formula]
    correct: list[int]
    non_atomic: list[int]
    skip: list[int]

    def refs_before(self, index: int) -> list[Ref]:
        return [*range(index - 1, -1, -1), *self.axioms]

    def step(self, ref: Ref) -> tuple[Formula, bool]:
        """The formula a premise refers to, and whether it is an axiom used without being stated."""
        return (self.proof[ref], False) if isinstance(ref, int) else (ref, True)

    def is_correct(self, ref: Ref) -> bool:
        return isinstance(ref, int) and ref in self.correct

    def is_non_atomic_or_axiom(self, ref: Ref) -> bool:
        return (isinstance(ref, int) and ref in self.non_atomic) or (not isinstance(ref, int) and ref in self.axioms)

    def is_skip(self, ref: Ref) -> bool:
        return isinstance(ref, int) and ref in self.skip


def _antecedent_provable(
    s: _State, rule: ForAll, rule_ref: Ref, constant: str, missing_axiom: bool, index: int, prev: list[Formula]
) -> Found:
    valid = non_atomic = skipped = False
    smallest: int | None = None
    axioms_used: list[Ref] = []
    other = substitute(rule.antecedent, constant)
    if other in s.proof[:index]:
        other_index = _rindex(s.proof[:index], other)
        smallest = 1 + (1 if missing_axiom else 0)
        axioms_used = [other_index, rule_ref]
        if other_index in s.correct:
            if s.is_correct(rule_ref):
                return (1, True, False, False, axioms_used)
            elif s.is_non_atomic_or_axiom(rule_ref):
                non_atomic = True
            elif s.is_skip(rule_ref):
                skipped = True
        if other_index in s.non_atomic:
            non_atomic = True
        if other_index in s.skip:
            skipped = True
        return (smallest, valid, skipped, non_atomic, axioms_used)
    steps, _, _, _, sub_axioms, _ = _provable(s, other, index, prev)
    if steps is not None:
        smallest = steps + 1 + (1 if missing_axiom else 0)
        axioms_used = [*sub_axioms, rule_ref]
        non_atomic = True
    return (smallest, valid, skipped, non_atomic, axioms_used)


def _find_premise(s: _State, premise: Formula, index: int, prev: list[Formula]) -> Provable:
    for ref in s.refs_before(index):
        step, missing = s.step(ref)
        if step == premise:
            return (1 if missing else 0, s.is_correct(ref), s.is_non_atomic_or_axiom(ref), s.is_skip(ref), [ref], [])
    steps, valid, non_atomic, skipped, sub_axioms, _ = _provable(s, premise, index, prev)
    if steps is not None:
        return (steps, valid, non_atomic, skipped, sub_axioms, [])
    return (None, False, False, False, [], [])


def _expected_premises(s: _State, formula: Formula, index: int, ref: Ref, prev_step: Formula) -> tuple[list[Ref], int]:
    expected: list[Ref] = [
        i - 1
        for i in range(index + 1)
        if s.proof[i] == formula or (isinstance(s.proof[i], And) and formula in s.proof[i].ops)  # type: ignore[union-attr]
    ]
    if not expected:
        expected = [index - 1]
    new_index = index
    if isinstance(ref, int):
        if isinstance(prev_step, And):
            expected.append(ref)
        if ref == index - 1:
            new_index = index - 1
    return expected, new_index


def _provable(
    s: _State, formula: Formula, index: int, prev: list[Formula], hypotheses: list[set[Formula]] | None = None
) -> Provable:
    if formula in s.axioms:
        return (1, True, False, False, [], [])
    proof = s.proof
    valid = non_atomic = skipped = missing_axiom = False
    axioms_used: list[Ref] = []
    smallest: int | None = None

    # proof by contradiction
    if (
        isinstance(formula, Func)
        and formula.name == "CONTRADICTS"
        and index + 1 < len(proof)
        and hypotheses is not None
    ):
        if not formula.args:
            if index == 0:
                return (None, False, False, False, [], [])
            negation = _neg(proof[index + 1])
            if negation in hypotheses[index - 1]:
                return (1, True, False, False, [proof[index - 1], negation], [negation])
            return (None, False, False, False, [], [])
        negation = _neg(formula.args[0])
        steps, sub_valid, sub_non_atomic, sub_skip, sub_axioms, _ = _find_premise(s, negation, index, [*prev, formula])
        if steps is not None and (sub_valid or sub_non_atomic or sub_skip):
            possible: list[Formula] = []
            for premise in sub_axioms:
                premise_formula = proof[premise] if isinstance(premise, int) else premise
                for j in range(index):
                    if proof[j] == premise_formula:
                        possible.extend(hypotheses[j])
            negation = _neg(proof[index + 1])
            if negation in possible:
                return (steps + 1, sub_valid, sub_non_atomic, sub_skip, [*sub_axioms, negation], [negation])
        return (None, False, False, False, [], [])

    # conjunction or disjunction introduction
    if isinstance(formula, And | Or):
        is_and = isinstance(formula, And)
        smallest = 1 if is_and else None
        for conjunct in formula.ops:
            steps, sub_valid, sub_non_atomic, sub_skip, sub_axioms, _ = _find_premise(
                s, conjunct, index, [*prev, formula]
            )
            if steps is None or not (sub_valid or sub_non_atomic or sub_skip):
                if is_and:
                    axioms_used = []
                    smallest = None
                    break
            elif not is_and:
                if smallest is None or steps + 1 < smallest:
                    axioms_used = sub_axioms
                    smallest = steps + 1
                    valid = True
            else:
                assert smallest is not None
                axioms_used.extend(sub_axioms)
                smallest += steps
                valid = True

    # conjunction elimination, from a conjunction or from a rule whose consequent is one
    for ref in s.refs_before(index):
        if smallest == 1:
            break
        prev_step, missing = s.step(ref)
        missing_axiom = missing_axiom or missing
        if isinstance(prev_step, And):
            for conjunct in prev_step.ops:
                if conjunct == formula:
                    axioms_used = [ref]
                    smallest = 1 + (1 if missing_axiom else 0)
                    if s.is_correct(ref):
                        valid = True
                    elif s.is_non_atomic_or_axiom(ref):
                        non_atomic = True
                    elif s.is_skip(ref):
                        skipped = True
                    break
        elif isinstance(prev_step, ForAll) and isinstance(prev_step.consequent, And):
            binding: dict[str, str] = {}
            for conjunct in prev_step.consequent.ops:
                if unify(formula, conjunct, binding):
                    constant = binding[VAR]
                    if substitute(prev_step.antecedent, constant) in [*prev, formula]:
                        continue
                    expected, new_index = _expected_premises(s, formula, index, ref, prev_step)
                    a_steps, a_valid, a_non_atomic, a_skip, a_axioms = _antecedent_provable(
                        s, prev_step, ref, constant, missing_axiom, new_index, [*prev, formula]
                    )
                    if (
                        a_steps is not None
                        and (smallest is None or a_steps + 1 < smallest)
                        and (ref in expected or any(i in a_axioms for i in expected))
                    ):
                        smallest = a_steps + 1
                        valid, non_atomic, skipped, axioms_used = a_valid, a_non_atomic, a_skip, a_axioms
                        if valid:
                            break

    # disjunction elimination
    if hypotheses is not None and (smallest is None or smallest > 1) and index > 0:
        required = [
            (hypotheses[j], j, j in s.correct, j in s.non_atomic, j in s.skip)
            for j in range(index)
            if proof[j] == formula
        ]
        for ref in s.correct[::-1]:
            disjunction = proof[ref]
            if not isinstance(disjunction, Or):
                continue
            premises: list[Ref] = []
            eliminated = True
            elim_valid = True
            elim_non_atomic = elim_skip = False
            for disjunct in disjunction.ops:
                found = False
                for step_hyps, step_index, step_valid, step_non_atomic, step_skip in required:
                    if not step_valid and not step_non_atomic and not step_skip:
                        continue
                    if disjunct in step_hyps:
                        premises.append(step_index)
                        found = True
                        if not step_valid:
                            elim_valid = False
                        elim_non_atomic = elim_non_atomic or step_non_atomic
                        elim_skip = elim_skip or step_skip
                        break
                if not found:
                    eliminated = False
                    break
            if eliminated:
                valid = valid or elim_valid
                non_atomic = non_atomic or elim_non_atomic
                skipped = skipped or elim_skip
                return (1, valid, non_atomic, skipped, [*premises, ref], list(disjunction.ops))

    # universal instantiation (modus ponens), or modus tollens
    for ref in s.refs_before(index):
        prev_step, missing = s.step(ref)
        missing_axiom = missing_axiom or missing
        rules = list(prev_step.ops) if isinstance(prev_step, And) else [prev_step]
        for rule in rules:
            if not isinstance(rule, ForAll):
                continue
            binding = {}  # upstream shares the unifier's bindings between the two attempts
            stop = False
            for contrapositive in (False, True):
                applied = ForAll(negate(rule.consequent), negate(rule.antecedent)) if contrapositive else rule
                target = negate(formula.op) if contrapositive and isinstance(formula, Not) else formula
                if isinstance(formula, And | Or) and type(applied.consequent) is type(formula):
                    unifies = False
                    assert isinstance(applied.consequent, And | Or)
                    for operand in applied.consequent.ops:
                        if unify(formula.ops[0], operand, binding):
                            instance = substitute(applied.consequent, binding[VAR])
                            assert isinstance(instance, And | Or)
                            unifies = frozenset(instance.ops) == frozenset(formula.ops)
                            if unifies:
                                break
                else:
                    unifies = unify(target, applied.consequent, binding)
                if not unifies:
                    continue
                constant = binding[VAR]
                if substitute(applied.antecedent, constant) in [*prev, formula]:
                    break  # upstream moves on to the next rule
                expected, new_index = _expected_premises(s, formula, index, ref, prev_step)
                # upstream reads _antecedent_provable's (skip, non-atomic) flags in the opposite order; kept as is
                a_steps, a_valid, a_non_atomic, a_skip, a_axioms = _antecedent_provable(
                    s, applied, ref, constant, missing_axiom, new_index, [*prev, formula]
                )
                if (
                    a_steps is not None
                    and (smallest is None or a_steps < smallest)
                    and (ref in expected or any(i in a_axioms for i in expected))
                ):
                    smallest = a_steps
                    stated_non_atomic = isinstance(ref, int) and ref in s.non_atomic
                    if contrapositive:
                        valid = False
                        non_atomic = stated_non_atomic or a_non_atomic or (s.is_correct(ref) and a_valid)
                    else:
                        valid = s.is_correct(ref) and a_valid and rule == prev_step
                        non_atomic = (
                            stated_non_atomic or a_non_atomic or (s.is_correct(ref) and a_valid and rule != prev_step)
                        )
                    skipped = s.is_skip(ref) or a_skip
                    axioms_used = a_axioms
                    if valid:
                        stop = True
                        break
            if stop:
                break

    if formula in proof[:index] and hypotheses is not None and smallest is None:
        smallest = 0
        valid = True
        axioms_used = [_rindex(proof[:index], formula)]
    return (smallest, valid, non_atomic, skipped, axioms_used, [])


def _path_length(graph: dict[Formula, list[Formula]], src: Formula, dst: Formula) -> int:
    queue: list[tuple[Formula, int]] = [(src, 0)]
    visited: set[Formula] = set()
    while queue:
        current, length = queue.pop()
        for nxt in graph.get(current, []):
            if nxt in visited:
                continue
            if nxt == dst:
                return length + 1
            queue.append((nxt, length + 1))
            visited.add(nxt)
    return -1


def _split_since(formulas: list[Formula]) -> list[Formula]:
    out = list(formulas)
    i = 0
    while i < len(out):
        f = out[i]
        if isinstance(f, Func) and f.name == "SINCE":
            out.insert(i + 1, f.args[1])
            out[i] = f = f.args[0]
        if isinstance(f, Func) and f.name in ("HOWEVER", "THEREFORE"):
            out[i] = f = f.args[0]
        if isinstance(f, Not) and isinstance(f.op, And | Or):
            out[i] = negate(f.op)
        i += 1
    return out


def _same_conclusion(step: Formula, goal: Formula) -> bool:
    if isinstance(step, And | Or) and type(step) is type(goal):
        assert isinstance(goal, And | Or)
        return frozenset(step.ops) == frozenset(goal.ops)
    return step == goal


def evaluate(proof: list[Formula], expected: list[Formula], axioms: list[Formula]) -> tuple[bool, bool, int]:
    """Upstream ``evaluate_response`` for proofs only: (strictly correct, lenient, correct steps)."""
    expected = _split_since(expected)
    proof = _split_since(proof)
    if not expected:
        return False, False, 0
    graph: dict[Formula, list[Formula]] = {}
    for axiom in axioms:
        if isinstance(axiom, ForAll):
            antecedents = list(axiom.antecedent.ops) if isinstance(axiom.antecedent, Or) else [axiom.antecedent]
            consequents = list(axiom.consequent.ops) if isinstance(axiom.consequent, And) else [axiom.consequent]
            for antecedent in antecedents:
                graph.setdefault(antecedent, []).extend(consequents)
    s = _State(axioms, proof, [], [], [])
    incorrect: list[int] = []
    found = found_skip = found_non_atomic = False
    hypotheses: list[set[Formula]] = []
    goal = expected[-1]
    i = 0
    while i < len(proof):
        step = proof[i]
        current: set[Formula] = set()
        if isinstance(step, Func) and step.name == "ASSUME":
            step = proof[i] = step.args[0]
            current.add(step)
            s.correct.append(i)
            hypotheses.append(current)
            i += 1
            continue
        is_conclusion = _same_conclusion(step, goal)
        steps, valid, non_atomic, skipped, premises, discharged = _provable(s, step, i, [], hypotheses)
        if any(isinstance(p, int) and p in incorrect for p in premises):
            steps = None
        if steps is not None and isinstance(step, Func) and step.name == "CONTRADICTS":
            hypotheses.append(current)
            i += 1
            # upstream reads the next step unguarded; a proof cut off after "This contradicts with ..." has none
            is_conclusion = i < len(proof) and proof[i] == goal
        for premise in premises:
            if isinstance(premise, int):
                current = current | hypotheses[premise]
            elif premise in proof[:i]:
                current = current | hypotheses[_rindex(proof[:i], premise)]
        current -= set(discharged)
        if steps in (0, 1) and (valid or non_atomic or skipped):
            if valid:
                s.correct.append(i)
                found = found or (is_conclusion and not current)
            elif non_atomic:
                s.non_atomic.append(i)
                found_non_atomic = found_non_atomic or (is_conclusion and not current)
            else:
                s.skip.append(i)
                found_skip = found_skip or (is_conclusion and not current)
            hypotheses.append(current)
            i += 1
            continue
        if steps is not None and steps not in (0, 1):
            found_non_atomic = found_non_atomic or (is_conclusion and not current)
            s.non_atomic.append(i)
            hypotheses.append(current)
            i += 1
            continue
        if isinstance(step, ForAll) and _rule_follows(graph, step):
            s.skip.append(i)
            hypotheses.append(current)
            i += 1
            continue
        hypotheses.append(current)
        incorrect.append(i)
        i += 1
    return found, found or found_skip or found_non_atomic, len(s.correct)


def _rule_follows(graph: dict[Formula, list[Formula]], rule: ForAll) -> bool:
    antecedents = list(rule.antecedent.ops) if isinstance(rule.antecedent, Or) else [rule.antecedent]
    consequents = list(rule.consequent.ops) if isinstance(rule.consequent, And) else [rule.consequent]
    return all(0 < _path_length(graph, a, c) <= 2 for a in antecedents for c in consequents)


def check_prontoqa(response: str, question: str, gold_proof: str) -> ProofCheck:
    """Grade a model's proof of the question's last ``Prove:`` goal, against the gold proof."""
    last = question[question.rfind("Q:") + 2 :] if "Q:" in question else question
    premises = last[: last.index("Prove:")] if "Prove:" in last else last
    axioms, _ = parse_reasoning(premises)
    expected, _ = parse_reasoning(gold_proof)
    proof, errors = response_proof(response)
    try:
        strict, lenient, correct = evaluate(proof, expected, axioms)
    except RecursionError:
        strict, lenient, correct = False, False, 0
    return ProofCheck(strict, lenient, len(proof), correct, errors)
