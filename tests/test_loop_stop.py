"""The rule that ends a generation caught in a loop (poccheck.backends.base.looping), on token sequences built here."""

from __future__ import annotations

import random

from poccheck.backends.base import LOOP_MAX_PERIOD, LOOP_WINDOW, looping


def prose(count: int, seed: int = 0) -> list[int]:
    """Tokens that do not repeat: like a chain of thought that goes somewhere."""
    rng = random.Random(seed)
    return [rng.randrange(30_000) for _ in range(count)]


def test_a_short_or_varied_generation_is_not_a_loop() -> None:
    assert not looping([7] * (LOOP_WINDOW - 1))  # too short to judge
    assert not looping(prose(2000))


def test_an_exact_repeat_is_a_loop_once_it_fills_the_window() -> None:
    for period in (1, 2, 17, LOOP_MAX_PERIOD):
        block = prose(period, seed=period)
        tokens = prose(50) + block * (LOOP_WINDOW // period + 2)
        first = next(n for n in range(len(tokens) + 1) if looping(tokens[:n]))
        assert first <= 50 + LOOP_WINDOW + period, period


def test_a_sentence_repeated_under_a_counting_step_number_is_a_loop() -> None:
    sentence = prose(21, seed=1)  # "N. The gear shaft is a metal part that ... hardness.\n"
    tokens = [t for step in range(30) for t in (40_000 + step, *sentence)]
    assert looping(tokens)


def test_a_period_longer_than_the_rule_looks_for_is_not_caught() -> None:
    block = prose(LOOP_MAX_PERIOD + 1, seed=3)
    assert not looping(block * 5)


def test_a_list_that_changes_one_token_in_ten_is_not_a_loop() -> None:
    # e.g. JSON records or parts listed with their own numbers: a structure, not a loop
    row = prose(9, seed=2)
    tokens = [t for number in range(60) for t in (50_000 + number, *row)]
    assert not looping(tokens)
