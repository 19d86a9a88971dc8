"""A fast reader of GGUF headers: metadata scalars and tensor shapes, skipping large arrays.

``gguf.GGUFReader`` materialises every array (a 262k-entry vocabulary takes ~20 s in Python); describing a
model needs only a few scalars and the tensor table, so this walks the header once and seeks past arrays.
Type codes and quantisation block sizes come from the ``gguf`` package (llama.cpp's own constants).

:func:`count_parameters` counts a model's parameters as its makers publish them: an ``output.weight`` that is
a stored copy of the tied ``token_embd.weight`` (as in the Qwen2.5 GGUF files) is counted once.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_MAX_STRING = 1 << 24
_MAX_COUNT = 1 << 32


class GGUFFormatError(ValueError):
    """The file is not a well-formed GGUF file."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def n_bytes(self) -> int:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(self.type)]
        return self.n_elements // block * size


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int


class _Reader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size

    def read(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise GGUFFormatError("file ends inside its header")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > _MAX_STRING:
            raise GGUFFormatError(f"implausible string length {length}")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item_kind = self.unpack("<I")
            count = self.unpack("<Q")
            if count > _MAX_COUNT:
                raise GGUFFormatError(f"implausible array length {count}")
            if item_kind in _SCALARS:
                width = struct.calcsize(_SCALARS[item_kind])
                self.handle.seek(width * count, 1)
                if self.handle.tell() > self.size:
                    raise GGUFFormatError("file ends inside its header")
            else:
                for _ in range(count):
                    self.value(item_kind)
            return None  # arrays are skipped: only their presence matters here
        raise GGUFFormatError(f"unknown metadata value type {kind}")


def read_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s GGUF header; raises GGUFFormatError when it is not GGUF or is damaged."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _Reader(handle, size)
        if reader.read(4) != b"GGUF":
            raise GGUFFormatError("not a GGUF file")
        version = reader.unpack("<I")
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        n_tensors = reader.unpack("<Q")
        n_kv = reader.unpack("<Q")
        if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
            raise GGUFFormatError("implausible tensor or metadata count")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = reader.string()
            metadata[key] = reader.value(reader.unpack("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = reader.string()
            n_dims = reader.unpack("<I")
            if n_dims > 8:
                raise GGUFFormatError(f"tensor {name} has {n_dims} dimensions")
            shape = tuple(reader.unpack("<Q") for _ in range(n_dims))
            kind = reader.unpack("<I")
            try:
                GGMLQuantizationType(kind)
            except ValueError:
                raise GGUFFormatError(f"tensor {name} has unknown type {kind}") from None
            tensors.append(TensorInfo(name, shape, kind, reader.unpack("<Q")))
        alignment = metadata.get("general.alignment") or GGUF_DEFAULT_ALIGNMENT
        position = handle.tell()
        data_offset = position + (-position % int(alignment))
    return GGUFHeader(version, metadata, tuple(tensors), data_offset)


EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
SAMPLE_ROWS = 2000  # rows of each matrix compared: ~1-3 MB read, well under a second to dequantise
COPY_CORRELATION = 0.99  # a stored copy of the same matrix (measured 0.999 Q5_0/Q8_0, 0.997 Q4_K/Q6_K)
LABELLED_COPY_CORRELATION = 0.9  # enough when general.size_label also says the copy is not counted
_SIZE_LABEL = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMBT])", re.IGNORECASE)
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


@dataclass(frozen=True)
class ParameterCount:
    """A model's parameters: every stored tensor, and as published (a tied output copy counted once)."""

    stored: int  # every element of every tensor in the file
    published: int  # ``stored`` less an output matrix that is a copy of the token embedding
    output_copy: bool  # output.weight was found to be a copy of token_embd.weight
    correlation: float | None  # of the two matrices' dequantised sample rows; None: no same-shape pair, or unreadable
    size_label: float | None  # general.size_label as a number (0.5B -> 5e8), when it is one


def size_label_value(label: Any) -> float | None:
    """``general.size_label`` as a parameter count ("135M" -> 1.35e8, "1.5B" -> 1.5e9); None for other labels
    (absent, "8x7B", "7B-A1B")."""
    if not isinstance(label, str):
        return None
    match = _SIZE_LABEL.fullmatch(label.strip())
    return float(match.group(1)) * _UNITS[match.group(2).upper()] if match else None


def count_parameters(path: Path, header: GGUFHeader, sample_rows: int = SAMPLE_ROWS) -> ParameterCount:
    """Count ``header``'s parameters, counting an output matrix that is a copy of the token embedding once.

    Some GGUF files store ``output.weight`` although the model ties it to ``token_embd.weight`` (the Qwen2.5
    conversions, at another quantisation than the embedding). It is a copy when it has the embedding's shape and
    is the same matrix up to quantisation: the first ``sample_rows`` rows of both, dequantised, correlate above
    0.99; or above 0.9 when ``general.size_label`` is also nearer the count without it. An output matrix of the
    same shape that is not a copy (an untied model's) still counts. Only the sample rows are read.
    """
    stored = sum(t.n_elements for t in header.tensors)
    label = size_label_value(header.metadata.get("general.size_label"))
    tensors = {t.name: t for t in header.tensors}
    embedding, output = tensors.get(EMBEDDING), tensors.get(OUTPUT)
    if embedding is None or output is None or embedding.shape != output.shape or not embedding.n_elements:
        return ParameterCount(stored, stored, False, None, label)
    without = stored - output.n_elements
    label_says_copy = label is not None and label > 0 and abs(math.log(without / label)) < abs(math.log(stored / label))
    correlation = _sample_correlation(path, header.data_offset, embedding, output, sample_rows)
    if correlation is None:
        copy = label_says_copy
    else:
        copy = correlation > COPY_CORRELATION or (correlation > LABELLED_COPY_CORRELATION and label_says_copy)
    return ParameterCount(stored, without if copy else stored, copy, correlation, label)


def _sample_correlation(path: Path, data_offset: int, first: TensorInfo, second: TensorInfo, rows: int) -> float | None:
    """Pearson correlation of the first ``rows`` rows of two same-shape tensors, dequantised; None when a type
    cannot be dequantised here or a matrix is constant."""
    import numpy as np
    from gguf.quants import dequantize

    samples = []
    with path.open("rb") as handle, np.errstate(all="ignore"):  # damaged blocks may decode to inf or nan
        for tensor in (first, second):
            kind = GGMLQuantizationType(tensor.type)
            block, size = GGML_QUANT_SIZES[kind]
            width = tensor.shape[0]  # GGUF lists the row length first
            if width % block:
                return None
            count = min(rows, tensor.n_elements // width)
            row_bytes = width // block * size
            handle.seek(data_offset + tensor.offset)
            raw = handle.read(count * row_bytes)
            if len(raw) != count * row_bytes:
                return None
            try:
                values = dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(count, row_bytes), kind)
            except (NotImplementedError, ValueError, IndexError):
                return None  # a type this gguf version cannot dequantise
            samples.append(np.asarray(values, dtype=np.float64).ravel())
        a, b = samples
        if a.size != b.size or not a.size or not np.isfinite(a).all() or not np.isfinite(b).all():
            return None
        a, b = a - a.mean(), b - b.mean()
        scale = math.sqrt(float(a @ a) * float(b @ b))
        return float(a @ b) / scale if scale > 0 and math.isfinite(scale) else None
