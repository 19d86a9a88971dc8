"""A LoRA adapter exported to GGUF changes llama.cpp's outputs the way the merged adapter changes transformers'
(bundled Gemma 3 270M: the Q4_K_M GGUF in llama.cpp, the same weights dequantised in transformers)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from poccheck import models
from poccheck.backends.hf import TransformersBackend, apply_adapter, load_pretrained
from poccheck.finetune.export import GGUF_ADAPTER, ExportUnsupported, export_gguf_lora

PROMPTS = [
    "Q: Every wumpus is a yumpus. Sam is a wumpus. Prove: Sam is a yumpus.\nA:",
    "Question: What do people aim to do at work?\nAnswer:",
    "The spindle bearing of the lathe makes a grinding noise because",
]


@pytest.mark.model
def test_gguf_lora_export_matches_the_merged_adapter_in_transformers(tmp_path: Path, bundled_model: Path) -> None:
    import llama_cpp
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
                param.copy_(torch.randn_like(param) * 0.5)
    peft_model.save_pretrained(str(tmp_path), save_embedding_layers=False)
    path = export_gguf_lora(tmp_path, bundled_model)
    assert path == tmp_path / GGUF_ADAPTER

    backend = TransformersBackend(info)
    tuned_hf = apply_adapter(backend.model, tmp_path)
    plain = llama_cpp.Llama(model_path=str(bundled_model), n_ctx=256, verbose=False)
    tuned = llama_cpp.Llama(model_path=str(bundled_model), n_ctx=256, verbose=False, lora_path=str(path))
    moved = agree = 0
    for prompt in PROMPTS:
        ids = backend.tokenize(prompt, add_bos=True)
        with torch.inference_mode():
            best = int(tuned_hf(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        expected = backend.tokenizer.decode([best])
        got = [
            llm.create_completion(prompt, max_tokens=1, temperature=0)["choices"][0]["text"] for llm in (plain, tuned)
        ]
        moved += got[0] != got[1]
        agree += got[1] == expected
    assert moved >= 1, f"the adapter did not change llama.cpp's next-token choice ({agree} agree)"
    # Q4_K_M in llama.cpp against float32 weights in transformers: the first tokens agree, allowing one miss
    # under this large random change (measured: 2 of 3; the trained probe adapter agrees on held-out accuracy)
    assert agree >= len(PROMPTS) - 1


def test_only_checked_architectures_are_exported(tmp_path: Path) -> None:
    with pytest.raises(ExportUnsupported, match="not a GGUF file"):
        export_gguf_lora(tmp_path, tmp_path / "model.safetensors")
