"""Attention evidence from captured attention maps (pure numpy).

Two views, both correlational, never causal:

* **Where the answer looked**: for each prompt token, the attention the answer's tokens pay to it (one
  layer, one head or the mean over heads), and a layer-by-head grid of the share of attention that lands on
  the prompt rather than on the first token (an "attention sink") or the answer itself.
* **Copy-attention score** (after Hsiao & Dutta 2025): teacher-force the gold text and, for each gold token
  that appeared earlier in the sequence, check whether the final layer's attention *peaks* on an earlier
  position holding that same token. Attention is renormalised per head without the first token, then the
  hit rate is averaged over heads, tokens and items. Chance is the rate a uniform attention would reach.
  The score depends on the tokenizer, so compare it within a model family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poccheck.records import AttentionCapture


@dataclass(frozen=True)
class AttentionView:
    """What the report draws for one item."""

    tokens: tuple[str, ...]
    prompt_length: int
    prompt_weights: tuple[float, ...]  # per prompt token, scaled so the largest (after the first token) is 1
    layer: int
    head: int | None
    grid: tuple[tuple[float, ...], ...]  # [layer][head]: share of answer attention on prompt tokens 1..n-1


def _layer_index(capture: AttentionCapture, layer: int) -> int:
    layers = capture.weights.shape[0]
    index = layer if layer >= 0 else layers + layer
    if not 0 <= index < layers:
        raise ValueError(f"layer {layer} out of range: the model has {layers} layers (0-{layers - 1})")
    return index


def view(capture: AttentionCapture, layer: int = -1, head: int | None = None) -> AttentionView:
    """Per-prompt-token attention from the answer tokens (default: last layer, mean over heads)."""
    weights = capture.weights  # [L, H, A, T]
    index = _layer_index(capture, layer)
    heads = weights.shape[1]
    if head is not None and not 0 <= head < heads:
        raise ValueError(f"head {head} out of range: the layer has {heads} heads (0-{heads - 1})")
    n = capture.prompt_length
    chosen = weights[index] if head is None else weights[index, head : head + 1]
    per_token = chosen[:, :, :n].mean(axis=(0, 1))  # mean over heads and answer tokens
    scale = per_token[1:].max() if n > 1 and per_token[1:].max() > 0 else 1.0
    shown = np.clip(per_token / scale, 0.0, 1.0)
    grid = weights[:, :, :, 1:n].sum(axis=-1).mean(axis=-1)  # [L, H]
    return AttentionView(
        tokens=capture.tokens,
        prompt_length=n,
        prompt_weights=tuple(round(float(v), 4) for v in shown),
        layer=index,
        head=head,
        grid=tuple(tuple(round(float(v), 4) for v in row) for row in grid),
    )


@dataclass(frozen=True)
class CopyScore:
    """Copy-attention score of one item: peak hit rate, attention mass and the uniform-attention chance."""

    peak: float
    mass: float
    chance: float
    tokens: int


def copy_score(capture: AttentionCapture) -> CopyScore | None:
    """The study's score on a teacher-forced gold answer; None when no gold token repeats an earlier one."""
    final = capture.weights[-1]  # [H, A, T]
    ids = capture.token_ids
    n = capture.prompt_length
    peaks, masses, chances = [], [], []
    for a in range(final.shape[1]):
        target = n + a  # position of the gold token predicted by query row a (query position target - 1)
        query = target - 1
        earlier = np.array(ids[1 : query + 1])
        holds = earlier == ids[target]
        if not holds.any():
            continue
        rows = final[:, a, 1 : query + 1]  # drop the first token (attention sink), renormalise per head
        rows = rows / np.clip(rows.sum(axis=-1, keepdims=True), 1e-12, None)
        peaks.append(float(holds[rows.argmax(axis=-1)].mean()))
        masses.append(float(rows[:, holds].sum(axis=-1).mean()))
        chances.append(float(holds.mean()))
    if not peaks:
        return None
    return CopyScore(float(np.mean(peaks)), float(np.mean(masses)), float(np.mean(chances)), len(peaks))


def mean_scores(scores: list[CopyScore]) -> CopyScore | None:
    """Average item scores (each item weighs the same)."""
    if not scores:
        return None
    return CopyScore(
        float(np.mean([s.peak for s in scores])),
        float(np.mean([s.mass for s in scores])),
        float(np.mean([s.chance for s in scores])),
        len(scores),
    )
