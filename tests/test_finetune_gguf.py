"""A LoRA adapter exported to GGUF changes llama.cpp's outputs the way the merged adapter changes transformers'
(bundled Gemma 3 270M: the Q4_K_M GGUF in llama.cpp, the same weights dequantised in transformers)."""

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
from poccheck.finetune.export import ExportUnsupported, export_gguf_lora

PROMPTS = [
    "Q: Every wumpus is a yumpus. Sam is a wumpus. Prove: Sam is a yumpus.\nA:",
    "Question: What do people aim to do at work?\nAnswer:",
    "The spindle bearing of the lathe makes a grinding noise because",
]


@pytest.mark.model
def test_gguf_lora_export_matches_the_merged_adapter_in_transformers(tmp_path: Path, bundled_model: Path) -> None:
    from peft import LoraConfig, get_peft_model

    info = models.resolve("gemma3-270m-q4@transformers")
    model, _ = load_pretrained(info, torch.float32, "sdpa")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a deliberate, sizeable change, so that the adapter visibly moves the outputs
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.1)
    peft_model.save_pretrained(str(tmp_path), save_embedding_layers=False)
    path = export_gguf_lora(tmp_path, bundled_model)
    assert path == tmp_path / GGUF_ADAPTER

    backend = TransformersBackend(info)
    prompts = [backend.tokenize(prompt, add_bos=True) for prompt in PROMPTS]
    plain_hf = [_hf_logits(backend.model, ids) for ids in prompts]
    tuned_model = apply_adapter(backend.model, tmp_path)  # merged into the weights: plain_hf first
    tuned_hf = [_hf_logits(tuned_model, ids) for ids in prompts]
    plain_cpp = _llama_logits(bundled_model, None, prompts)
    tuned_cpp = _llama_logits(bundled_model, path, prompts)
    shift_hf = np.concatenate([(t - p).ravel() for t, p in zip(tuned_hf, plain_hf, strict=True)])
    shift_cpp = np.concatenate([(t - p).ravel() for t, p in zip(tuned_cpp, plain_cpp, strict=True)])
    # Over every position of the three prompts and the whole vocabulary (59 positions x 262,144 logits), the
    # shift the adapter causes in llama.cpp (Q4_K_M weights) must follow the shift it causes in transformers (the
    # same weights dequantised, float32), in direction (correlation) and size (slope of the fit through 0).
    # Measured, mean |shift| 3.76 logits: r = 0.991 and slope 0.980 both on AVX-512 and on an AVX2-only build
    # (without llamafile, as the set-up builds); r = 0.990, slope 0.986 with llamafile. An adapter that is not
    # applied gives no shift (r undefined: the test fails); a wrong tensor or a transposed A/B gives r near 0; a
    # wrong scale moves the slope.
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
