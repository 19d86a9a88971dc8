"""A fast reader of GGUF headers: metadata scalars and tensor shapes, skipping large arrays.

``gguf.GGUFReader`` materialises every array (a 262k-entry vocabulary takes ~20 s in Python); describing a
model needs only a few scalars and the tensor table, so this walks the header once and seeks past arrays.
Type codes and quantisation block sizes come from the ``gguf`` package (llama.cpp's own constants).
"""

from __future__ import annotations

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
