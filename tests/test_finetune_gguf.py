"""A LoRA adapter exported to GGUF changes llama.cpp's outputs the way the merged adapter changes transformers'
(the quantised GGUF in llama.cpp, the same weights dequantised in transformers), for each exported architecture:
Gemma 3 (the bundled 270M), Llama (SmolLM2-135M-Instruct: query/key rows permuted) and Qwen2
(Qwen2.5-Coder-0.5B-Instruct: biased projections)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from poccheck import models
from poccheck.adapters import GGUF_ADAPTER
from poccheck.backends.hf import TransformersBackend, apply_adapter, load_pretrained
from poccheck.finetune.export import ExportUnsupported, export_gguf_lora, rotary_permute
from poccheck.gguf_header import read_header

PROMPTS = [
    "Q: Every wumpus is a yumpus. Sam is a wumpus. Prove: Sam is a yumpus.\nA:",
    "Question: What do people aim to do at work?\nAnswer:",
    "The spindle bearing of the lathe makes a grinding noise because",
]


# the modules adapted and the size of their B matrices; for Llama only the query and key projections, the two
# that its permutation touches (with other modules adapted too, their shift hides a wrong order of these rows)
ARCHITECTURES = {
    "gemma3-270m-q4": ("gemma3", ["q_proj", "v_proj", "down_proj"], 0.1),
    "smollm2-135m-q4": ("llama", ["q_proj", "k_proj"], 0.4),
    "qwen2.5-coder-0.5b-q4": ("qwen2", ["q_proj", "k_proj", "v_proj", "gate_proj"], 0.1),
}


@pytest.mark.model
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_gguf_lora_export_matches_the_merged_adapter_in_transformers(tmp_path: Path, name: str) -> None:
    from peft import LoraConfig, get_peft_model

    if not models.installed(name):
        pytest.skip(f"{name} is not installed (make ladder-setup)")
    arch, modules, size = ARCHITECTURES[name]
    info = models.resolve(f"{name}@transformers")
    base_gguf = Path(info.path)
    assert read_header(base_gguf).metadata["general.architecture"] == arch
    model, _ = load_pretrained(info, torch.float32, "sdpa")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=modules, init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a deliberate, sizeable change, so that the adapter visibly moves the outputs
        for weight, param in peft_model.named_parameters():
            if "lora_B" in weight:
                param.copy_(torch.randn_like(param) * size)
    peft_model.save_pretrained(str(tmp_path), save_embedding_layers=False)
    path = export_gguf_lora(tmp_path, base_gguf)
    assert path == tmp_path / GGUF_ADAPTER

    backend = TransformersBackend(info)
    prompts = [backend.tokenize(prompt, add_bos=True) for prompt in PROMPTS]
    plain_hf = [_hf_logits(backend.model, ids) for ids in prompts]
    tuned_model = apply_adapter(backend.model, tmp_path)  # merged into the weights: plain_hf first
    tuned_hf = [_hf_logits(tuned_model, ids) for ids in prompts]
    plain_cpp = _llama_logits(base_gguf, None, prompts)
    tuned_cpp = _llama_logits(base_gguf, path, prompts)
    shift_hf = np.concatenate([(t - p).ravel() for t, p in zip(tuned_hf, plain_hf, strict=True)])
    shift_cpp = np.concatenate([(t - p).ravel() for t, p in zip(tuned_cpp, plain_cpp, strict=True)])
    # Over every position of the three prompts and the whole vocabulary, the shift the adapter causes in llama.cpp
    # (quantised weights) must follow the shift it causes in transformers (the same weights dequantised, float32),
    # in direction (correlation) and size (slope of the fit through 0). Measured on an AVX2-only build (without
    # llamafile, as the set-up builds): Gemma 3, mean |shift| 3.76 logits, r = 0.991, slope 0.980 (the same on
    # AVX-512); Llama (SmolLM2), 1.10, r = 0.977, slope 1.024, and r = 0.059 when the query/key rows of B are not
    # permuted; Qwen2, 2.23, r = 0.998, slope 0.996. An adapter that is not applied gives no shift (r undefined: the
    # test fails); a wrong tensor, a transposed A/B or rows in the wrong order give r near 0; a wrong scale moves
    # the slope.
    correlation = float(np.corrcoef(shift_hf, shift_cpp)[0, 1])
    slope = float(np.dot(shift_hf, shift_cpp) / np.dot(shift_hf, shift_hf))
    assert float(np.abs(shift_hf).mean()) > 0.5, "the adapter barely moves transformers' logits: the check is void"
    assert correlation > 0.9, f"the adapter's effect in llama.cpp does not follow transformers' (r = {correlation:.3f})"
    assert 0.8 < slope < 1.25, f"the adapter's effect in llama.cpp has another size (slope {slope:.2f})"


def _hf_logits(model: Any, ids: list[int]) -> np.ndarray[Any, Any]:
    with torch.inference_mode():
        return np.asarray(model(input_ids=torch.tensor([ids])).logits[0].float().numpy(), dtype=np.float64)


def _llama_logits(model: Path, adapter: Path | None, prompts: list[list[int]]) -> list[np.ndarray[Any, Any]]:
    import llama_cpp

    from poccheck.backends.llama_cpp import weight_repacking

    with weight_repacking(llama_cpp, enabled=False):  # as poccheck loads models (and AMX repacking can trap in VMs)
        lora = str(adapter) if adapter else None
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=256, logits_all=True, verbose=False, lora_path=lora)
    try:
        rows = []
        for ids in prompts:
            llm.reset()
            llm.eval(ids)
            rows.append(np.array(llm.scores[: len(ids)], dtype=np.float64))
        return rows
    finally:
        llm.close()


def test_only_checked_architectures_are_exported(tmp_path: Path) -> None:
    with pytest.raises(ExportUnsupported, match="not a GGUF file"):
        export_gguf_lora(tmp_path, tmp_path / "model.safetensors")


def test_rotary_permutation_is_llama_cpps_and_refuses_rows_that_do_not_split_over_the_heads() -> None:
    # llama.cpp's LlamaModel.permute on 2 heads of 4 rows: each head's halves [0 1 | 2 3] interleave to [0 2 1 3]
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert rotary_permute(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ExportUnsupported, match="cannot permute 8 query/key rows over 3 heads"):
        rotary_permute(rows, 3)
