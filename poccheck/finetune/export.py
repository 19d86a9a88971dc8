"""Export a peft LoRA adapter as a GGUF LoRA adapter that llama.cpp applies on top of the base GGUF.

Written with the ``gguf`` package as llama.cpp's ``convert_lora_to_gguf.py`` writes it: ``general.type =
adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted weight ``<gguf name>.lora_a``
(rank x inputs) and ``.lora_b`` (outputs x rank). Only architectures checked against transformers are exported:
Gemma 3 and Qwen2, whose attention and MLP weights reach GGUF unchanged, and Llama, whose query and key rows
llama.cpp's converter permutes for its rotary layout (``LlamaModel.permute``), so the adapter's B matrices of
``q_proj`` and ``k_proj`` get the same row permutation (the delta B @ A then matches the permuted base weight). The
other architectures stay on the transformers backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from poccheck.adapters import ADAPTER_WEIGHTS, GGUF_ADAPTER
from poccheck.gguf_header import read_header

EXPORTABLE = ("gemma3", "llama", "qwen2")  # checked against transformers (see tests/test_finetune_gguf.py)
ROTARY_PERMUTED = ("llama",)  # architectures whose query/key rows llama.cpp's converter permutes


class ExportUnsupported(Exception):
    """The adapter cannot be written for llama.cpp; the message says why."""


def export_gguf_lora(folder: Path, base_gguf: Path) -> Path:
    """Write ``folder/adapter.gguf`` for the base model ``base_gguf``; raise ExportUnsupported when it cannot be."""
    import gguf
    from safetensors.torch import load_file

    if base_gguf.suffix.lower() != ".gguf":
        raise ExportUnsupported("the base model is not a GGUF file")
    metadata = read_header(base_gguf).metadata
    arch = str(metadata.get("general.architecture"))
    if arch not in EXPORTABLE:
        raise ExportUnsupported(f"GGUF LoRA export is not checked for the {arch} architecture")
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("use_rslora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ExportUnsupported("DoRA, rsLoRA and per-layer ranks have no GGUF LoRA form")
    blocks = int(metadata[f"{arch}.block_count"])
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), blocks)
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    pairs: dict[str, dict[str, object]] = {}
    for key, value in tensors.items():
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> model.layers.0.self_attn.q_proj
        stem, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        target = names.get_name(stem)
        if target is None or part not in ("A.weight", "B.weight"):
            raise ExportUnsupported(f"no GGUF tensor for adapter weight {key}")
        matrix = value.float().numpy()
        if part[0] == "B" and arch in ROTARY_PERMUTED and stem.endswith(("q_proj", "k_proj")):
            heads_key = "head_count" if stem.endswith("q_proj") else "head_count_kv"
            matrix = rotary_permute(matrix, int(metadata.get(f"{arch}.attention.{heads_key}") or 0))
        pairs.setdefault(f"{target}.weight", {})[part[0]] = matrix
    path = folder / GGUF_ADAPTER
    partial = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for name in sorted(pairs):
        writer.add_tensor(f"{name}.lora_a", pairs[name]["A"])  # type: ignore[arg-type]
        writer.add_tensor(f"{name}.lora_b", pairs[name]["B"])  # type: ignore[arg-type]
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return path


def rotary_permute(rows: np.ndarray[Any, Any], heads: int) -> np.ndarray[Any, Any]:
    """Reorder the output rows of a query or key projection as llama.cpp's converter does for Llama (each head's
    rotary halves interleaved); ``heads`` is the number of heads of that projection (key/value heads for keys)."""
    if heads <= 0 or rows.shape[0] % (2 * heads):
        raise ExportUnsupported(f"cannot permute {rows.shape[0]} query/key rows over {heads} heads")
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)
