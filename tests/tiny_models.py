"""Tiny random causal LMs built in a temp folder (config + save_pretrained), for fast transformers tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "Question: What colour is the sky? Answer: blue green red",
    "The spindle bearing of the lathe makes a grinding noise.",
    "Inspection rule: reject parts with cracks. Accept the rest.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 plus minus equals",
    "Q: A: the a an of to in is was machine press oil seal",
]


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tokenizer.train_from_iterator(CORPUS, trainer)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return fast


def build_model(folder: Path, kind: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random model of ``kind`` ('llama' or 'gemma') with its tokenizer into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        config = Gemma3TextConfig(
            **common, head_dim=8, sliding_window=16, layer_types=["sliding_attention", "full_attention"]
        )
        model = Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def build_gguf(
    path: Path,
    seed: int = 0,
    output: str = "random",
    embedding_type: str = "F32",
    output_type: str = "F32",
    size_label: str | None = None,
) -> Path:
    """Write a tiny random Llama as an unquantised (float32) GGUF file with a byte-level BPE tokenizer.

    Its 300-token vocabulary keeps per-position log-probs cheap, so a server can return prompt log-probs for it
    in milliseconds (Gemma's 262k vocabulary takes seconds per request).

    ``output`` is the ``output.weight`` matrix (300 x 32, the embedding's shape): "random" (untied, its own
    weights), "copy" (the embedding's matrix stored again, as the Qwen2.5 GGUF files store a tied one), or
    "blend" (0.93 x the embedding + noise: correlated 0.93, not a copy). ``embedding_type`` and ``output_type``
    store those two at a ggml quantisation (F32, F16, Q8_0, Q5_0, Q4_0, ...); ``size_label`` sets
    ``general.size_label``. Counts: 28,192 parameters besides the output matrix's 9,600."""
    import json

    import gguf
    import numpy as np
    from gguf.quants import quantize

    folder = path.parent / f"{path.stem}-tokenizer"
    tokenizer = build_tokenizer(folder)
    state = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = state["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda pair: pair[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    special = set(tokenizer.all_special_ids)
    hidden, ffn, layers, heads, kv_heads, n_ctx = 32, 64, 2, 4, 2, 4096
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    if size_label is not None:
        writer.add_size_label(size_label)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(True)
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def stored(name: str, matrix: np.ndarray, kind: str) -> None:
        qtype = gguf.GGMLQuantizationType[kind]
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, matrix)
        else:
            writer.add_tensor(name, quantize(matrix, qtype), raw_dtype=qtype)

    embedding = weight(len(tokens), hidden)
    stored("token_embd.weight", embedding, embedding_type)
    for block in range(layers):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{block}.attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{block}.attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{block}.attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{block}.attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{block}.ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{block}.ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{block}.ffn_down.weight", weight(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    if output == "copy":
        head = embedding
    elif output == "blend":
        head = (0.93 * embedding + 0.37 * weight(len(tokens), hidden)).astype(np.float32)
    elif output == "random":
        head = weight(len(tokens), hidden)
    else:
        raise ValueError(f"output must be random, copy or blend, not {output!r}")
    stored("output.weight", head, output_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
