"""The throughput projections of :mod:`poccheck.analysis.cost` checked against published measurements.

A measurements CSV holds one row per (hardware, model, quantisation): datasheet memory bandwidth (GB/s) and
16-bit peak TFLOPS, and measured decode and prefill tokens/s. At efficiency 1 a row projects

    decode  = memory_bandwidth_gbs / weight_gb                         (tokens/s; each token reads all weights)
    prefill = peak_tflops_16bit * 1e12 / (2 * params_billions * 1e9)   (tokens/s; 2 FLOPs per parameter)

and at efficiency e its projected/measured ratio is ``e * projection_at_1 / measured``. Efficiencies are per
hardware class. Decode: ``gpu``, ``apple``, ``cpu_1socket``, ``cpu_multisocket`` (a multi-socket CPU, from
"(2 sockets)" or "2x" in the hardware text, reaches a much smaller share of its datasheet bandwidth: the
weights are split across the sockets' memory). Prefill: ``gpu``, ``gpu_geforce``, ``apple``, ``cpu``; GeForce
cards are a class of their own because their datasheet 16-bit figure is the halved FP32-accumulate rate, which
llama.cpp's FP16/int8 kernels exceed, so they reach 3-5x the share of it that data-centre GPUs do.

Fitting a class = the efficiency that makes the geometric-mean ratio 1 over its rows,
``exp(mean(log(measured / projection_at_1)))``. Leave-one-out: each row's ratio with its class's efficiency
fitted on the class's other rows (None for a class of one row). Rows that cannot be used are kept, with why.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from poccheck.errors import PocCheckError

KINDS = ("apple", "gpu", "cpu")
DECODE_CLASSES = ("gpu", "apple", "cpu_1socket", "cpu_multisocket")
PREFILL_CLASSES = ("gpu", "gpu_geforce", "apple", "cpu")
# Which rows each shipped profile in data/cost_profiles.yaml is calibrated on: (decode class, prefill class).
PROFILE_CLASSES: dict[str, tuple[str, str]] = {
    "onprem_cpu": ("cpu_multisocket", "cpu"),
    "onprem_gpu": ("gpu", "gpu"),
}
_NUMBERS = ("memory_bandwidth_gbs", "params_billions", "weight_gb", "decode_tok_s")
_OPTIONAL_NUMBERS = ("peak_tflops_16bit", "prefill_tok_s")
_COLUMNS = ("hardware", "kind", *_NUMBERS, *_OPTIONAL_NUMBERS, "batch")
_SOCKETS = re.compile(r"\((\d+) sockets?\)|^(\d+)\s*x\s", re.IGNORECASE)
_GEFORCE = re.compile(r"\bGeForce\b|\bRTX [2-5]0[5-9]0\b", re.IGNORECASE)


@dataclass(frozen=True)
class Measurement:
    """One CSV row; ``line`` is its line in the file. Empty optional figures are None."""

    line: int
    hardware: str
    kind: str
    memory_bandwidth_gbs: float
    peak_tflops_16bit: float | None
    params_billions: float
    weight_gb: float
    decode_tok_s: float
    prefill_tok_s: float | None
    batch: int
    model: str = ""
    quant: str = ""

    @property
    def sockets(self) -> int:
        match = _SOCKETS.search(self.hardware)
        return int(match.group(1) or match.group(2)) if match else 1

    @property
    def decode_class(self) -> str:
        if self.kind != "cpu":
            return self.kind
        return "cpu_multisocket" if self.sockets > 1 else "cpu_1socket"

    @property
    def prefill_class(self) -> str:
        return "gpu_geforce" if self.kind == "gpu" and _GEFORCE.search(self.hardware) else self.kind

    @property
    def decode_skip(self) -> str | None:
        """Why the row's decode cannot be compared with a one-stream projection, or None."""
        return f"per-request decode at batch {self.batch}, not one stream" if self.batch != 1 else None

    @property
    def prefill_skip(self) -> str | None:
        if self.batch != 1:
            return f"batch {self.batch}"
        if self.prefill_tok_s is None:
            return "no prefill measured"
        return "no datasheet TFLOPS" if self.peak_tflops_16bit is None else None

    @property
    def decode_at_1(self) -> float:
        """Measured / projected decode at efficiency 1 (= the efficiency reached)."""
        return self.decode_tok_s / (self.memory_bandwidth_gbs / self.weight_gb)

    @property
    def prefill_at_1(self) -> float | None:
        if self.prefill_tok_s is None or self.peak_tflops_16bit is None:
            return None
        return self.prefill_tok_s / (self.peak_tflops_16bit * 1e12 / (2 * self.params_billions * 1e9))


@dataclass(frozen=True)
class Efficiencies:
    """Share of datasheet bandwidth (decode) and TFLOPS (prefill) reached, per class."""

    decode: Mapping[str, float]
    prefill: Mapping[str, float]


@dataclass(frozen=True)
class RowRatios:
    """Projected / measured for one row: at the given efficiencies and leave-one-out (None where not usable)."""

    row: Measurement
    decode: float | None
    prefill: float | None
    decode_loo: float | None
    prefill_loo: float | None


def load_measurements(path: Path) -> list[Measurement]:
    """Read a measurements CSV; raises :class:`PocCheckError` naming the file, line and field of a bad row."""
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise PocCheckError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
        for record in reader:
            rows.append(_row(path, reader.line_num, record))
    return rows


def _row(path: Path, line: int, record: Mapping[str, str | None]) -> Measurement:
    def text(name: str) -> str:
        return (record.get(name) or "").strip()

    def bad(name: str, why: str) -> PocCheckError:
        return PocCheckError(f"{path}, line {line}, field {name}: {why}, not {record.get(name)!r}")

    def optional(name: str) -> float | None:
        return number(name) if text(name) else None

    def number(name: str) -> float:
        try:
            value = float(text(name))
        except ValueError:
            raise bad(name, "must be a number") from None
        if not (math.isfinite(value) and value > 0):
            raise bad(name, "must be a number above 0")
        return value

    if not text("hardware"):
        raise bad("hardware", "must not be empty")
    if text("kind") not in KINDS:
        raise bad("kind", f"must be one of {', '.join(KINDS)}")
    if not text("batch").isdigit() or int(text("batch")) < 1:
        raise bad("batch", "must be a whole number of at least 1")
    return Measurement(
        line=line,
        hardware=text("hardware"),
        kind=text("kind"),
        memory_bandwidth_gbs=number("memory_bandwidth_gbs"),
        peak_tflops_16bit=optional("peak_tflops_16bit"),
        params_billions=number("params_billions"),
        weight_gb=number("weight_gb"),
        decode_tok_s=number("decode_tok_s"),
        prefill_tok_s=optional("prefill_tok_s"),
        batch=int(text("batch")),
        model=text("model"),
        quant=text("quant"),
    )


def _reached(rows: Sequence[Measurement], stage: str) -> dict[str, list[tuple[int, float]]]:
    """Per class: (index in rows, efficiency reached) for the usable rows of ``stage`` (decode or prefill)."""
    classes: dict[str, list[tuple[int, float]]] = {}
    for index, row in enumerate(rows):
        if stage == "decode" and row.decode_skip is None:
            classes.setdefault(row.decode_class, []).append((index, row.decode_at_1))
        elif stage == "prefill" and row.prefill_skip is None and row.prefill_at_1 is not None:
            classes.setdefault(row.prefill_class, []).append((index, row.prefill_at_1))
    return classes


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def fit(rows: Sequence[Measurement]) -> Efficiencies:
    """Per class, the efficiency whose geometric-mean projected/measured ratio over its usable rows is 1."""
    decode, prefill = (
        {cls: _geometric_mean([r for _, r in reached]) for cls, reached in _reached(rows, stage).items()}
        for stage in ("decode", "prefill")
    )
    return Efficiencies(decode=decode, prefill=prefill)


def ratios(rows: Sequence[Measurement], efficiencies: Efficiencies) -> list[RowRatios]:
    """Every row's projected/measured ratios at ``efficiencies`` (None for an unusable row or a class without an
    efficiency) and leave-one-out (fitted on the other usable rows of its class)."""
    found: dict[tuple[str, int], tuple[float | None, float | None]] = {}
    for stage, given in (("decode", efficiencies.decode), ("prefill", efficiencies.prefill)):
        for cls, reached in _reached(rows, stage).items():
            for index, value in reached:
                others = [r for i, r in reached if i != index]
                loo = _geometric_mean(others) / value if others else None
                found[stage, index] = (given[cls] / value if cls in given else None, loo)
    result = []
    for index, row in enumerate(rows):
        decode, decode_loo = found.get(("decode", index), (None, None))
        prefill, prefill_loo = found.get(("prefill", index), (None, None))
        result.append(RowRatios(row, decode, prefill, decode_loo, prefill_loo))
    return result


def class_ratios(results: Sequence[RowRatios], stage: str, cls: str, *, loo: bool = False) -> list[float]:
    """The ``stage`` (decode or prefill) ratios, at the given efficiencies or leave-one-out, of class ``cls``."""
    values = []
    for result in results:
        row_class = result.row.decode_class if stage == "decode" else result.row.prefill_class
        value = {
            ("decode", False): result.decode,
            ("decode", True): result.decode_loo,
            ("prefill", False): result.prefill,
            ("prefill", True): result.prefill_loo,
        }[stage, loo]
        if row_class == cls and value is not None:
            values.append(value)
    return values
