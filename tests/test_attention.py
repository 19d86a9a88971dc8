"""Attention evidence: the pure analysis on constructed maps, the capture on a tiny model, and `explain`."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from poccheck.backends.hf import HFSettings, TransformersBackend
from poccheck.explain import explain
from poccheck.grading.attention import copy_score, mean_scores, view
from poccheck.models import resolve
from poccheck.records import AttentionCapture

from .tiny_models import build_model


def capture(ids: list[int], prompt_length: int, weights: np.ndarray) -> AttentionCapture:
    return AttentionCapture(tuple(f"t{i}" for i in ids), tuple(ids), prompt_length, weights)


def test_view_scales_prompt_weights_and_builds_the_grid() -> None:
    # 2 layers, 2 heads, 1 answer token, 4 positions (3 prompt + 1 answer)
    weights = np.zeros((2, 2, 1, 4))
    weights[:, :, 0] = [0.5, 0.1, 0.3, 0.1]  # the sink takes half, token 2 is the most attended prompt token
    shown = view(capture([1, 5, 6, 7], 3, weights))
    assert shown.prompt_weights == pytest.approx((1.0, 1 / 3, 1.0), abs=1e-4)  # sink clipped; scale from the rest
    assert shown.grid == ((0.4, 0.4), (0.4, 0.4)) and shown.layer == 1
    single = view(capture([1, 5, 6, 7], 3, weights), layer=0, head=1)
    assert single.layer == 0 and single.head == 1
    with pytest.raises(ValueError, match="layer 5 out of range"):
        view(capture([1, 5, 6, 7], 3, weights), layer=5)
    with pytest.raises(ValueError, match="head 2 out of range"):
        view(capture([1, 5, 6, 7], 3, weights), head=2)


def test_copy_score_counts_peaks_on_earlier_copies() -> None:
    # sequence: <bos> A B C | answer: B C   (prompt_length 4; gold tokens B and C each appeared earlier)
    ids = [1, 10, 11, 12, 11, 12]
    weights = np.zeros((1, 2, 2, 6))
    # query for gold "B" (position 3): head 0 peaks on position 2 (a B), head 1 peaks on position 1 (an A)
    weights[0, 0, 0, :4] = [0.6, 0.1, 0.2, 0.1]
    weights[0, 1, 0, :4] = [0.6, 0.3, 0.05, 0.05]
    # query for gold "C" (position 4): both heads peak on position 3 (a C)
    weights[0, :, 1, :5] = [0.5, 0.0, 0.1, 0.3, 0.1]
    score = copy_score(capture(ids, 4, weights))
    assert score is not None and score.tokens == 2
    assert score.peak == pytest.approx((0.5 + 1.0) / 2)
    assert score.mass == pytest.approx(((0.5 + 0.125) / 2 + 0.6) / 2)
    assert score.chance == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert copy_score(capture([1, 10, 11, 12], 3, np.full((1, 1, 1, 4), 0.25))) is None  # nothing repeats
    assert mean_scores([score, score]) == score.__class__(score.peak, score.mass, score.chance, 2)


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory: pytest.TempPathFactory) -> TransformersBackend:
    folder = build_model(tmp_path_factory.mktemp("gemma"), "gemma")
    return TransformersBackend(resolve(f"{folder}@transformers"), HFSettings(device="cpu"))


def test_capture_has_one_normalised_row_per_answer_token(tiny_backend: TransformersBackend) -> None:
    captured = tiny_backend.capture_attention("Inspection rule: reject parts", " with cracks")
    layers, heads, answers, total = captured.weights.shape
    n_answer = len(tiny_backend.tokenize(" with cracks", False))
    assert (layers, heads) == (2, 4) and answers == n_answer and total == len(captured.tokens)
    assert captured.prompt_length == len(tiny_backend.tokenize("Inspection rule: reject parts", True))
    np.testing.assert_allclose(captured.weights.sum(axis=-1), 1.0, atol=1e-5)
    for a in range(answers):  # causal: nothing after the query position
        assert np.all(captured.weights[:, :, a, captured.prompt_length + a :] == 0)
    assert tiny_backend.model.config._attn_implementation != "eager"  # restored after the capture


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_explain_writes_a_safe_page(tmp_path: Path) -> None:
    folder = build_model(tmp_path / "llama", "llama")
    tasks = tmp_path / "t.yaml"
    tasks.write_text(
        "items:\n"
        "  - {id: q1, type: exact, input: 'Is <b>this</b> a crack?', answer: 'reject parts'}\n"
        "  - {id: q2, type: multiple_choice, input: 'Sky?', choices: [blue, green], answer: A}\n",
        encoding="utf-8",
    )
    for item in ("q1", "q2"):
        page = tmp_path / f"{item}.html"
        result = explain(f"{folder}@transformers", tasks, item, page)
        html = page.read_text(encoding="utf-8")
        parser = Text()
        parser.feed(html)
        assert parser.scripts == 0 and "<b>this</b>" not in html
        assert "correlational evidence, not a causal explanation" in "".join(parser.parts)
        assert result.page == page and page.stat().st_mode & 0o777 == 0o600
    with pytest.raises(Exception, match="no item 'q3'"):
        explain(f"{folder}@transformers", tasks, "q3", tmp_path / "x.html")
