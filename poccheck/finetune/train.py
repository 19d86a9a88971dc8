"""LoRA fine-tuning: training examples in the exact form assess prompts, a plain PyTorch loop with the loss on
the answer tokens only, early stopping on validation loss, and checkpoints to resume from.

What is learned is what is tested: each example is the prompt ``render_prompt`` gives the item in the chosen
mode, tokenized as the transformers backend tokenizes it, followed by the gold target (the gold proof for proof
items, ``rationale`` + "So the answer is X." in chain-of-thought mode, the gold choice's continuation for
multiple choice scored by likelihood) and, for generation, the end-of-sequence token, so the model learns to stop.
Runs are deterministic for a seed: the data order of each epoch and the dropout of each step are seeded, so a
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from poccheck.adapters import CHECKPOINT, TrainingRecord
from poccheck.errors import FinetuneError
from poccheck.memory import PeakRSS
from poccheck.records import LETTERS, Mode, Suite, TaskItem
from poccheck.tasks.prompts import ANSWER_IS, render_prompt

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """Hyper-parameters; the defaults suit a few hundred short items on a model up to ~0.5B."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: int = 4
    batch_size: int = 8
    patience: int = 1  # epochs without a lower validation loss before stopping
    max_length: int = 512  # examples longer than this (tokens) are left out
    seed: int = 0
    checkpoint_every: int = 20  # steps
    target_modules: tuple[str, ...] = TARGET_MODULES


@dataclass(frozen=True)
class Example:
    item_id: str
    prompt: tuple[int, ...]
    target: tuple[int, ...]


def target_text(suite: Suite, item: TaskItem, mode: Mode) -> str | None:
    """The continuation a perfect model would produce after the item's prompt, or None when the item has no
    writable gold answer (regex items, JSON items given only a schema)."""
    prompt = render_prompt(suite, item, mode)
    if prompt.continuations:  # multiple choice scored by likelihood: raise the gold choice's likelihood
        return str(prompt.continuations[item.answer])
    language = "ja" if suite.language.startswith("ja") else "en"
    rationale = item.metadata.get("rationale")
    if item.type == "proof":
        text = str(rationale or item.answer)
    else:
        gold = _gold(item)
        if gold is None:
            return None
        if mode == "cot":
            text = f"{rationale} {ANSWER_IS[language]} {gold}." if rationale else f"{ANSWER_IS[language]} {gold}."
        else:
            text = gold
    return text if prompt.text.endswith((" ", "\n")) else " " + text


def _gold(item: TaskItem) -> str | None:
    if item.is_multiple_choice:
        return LETTERS[item.answer]
    if item.type in ("exact", "contains"):
        return str(item.answer)
    if item.type == "numeric":
        value = float(item.answer)
        return str(int(value)) if value.is_integer() else str(item.answer)
    if item.type == "json" and isinstance(item.answer, dict):
        return json.dumps(item.answer, ensure_ascii=False)
    return None


def build_examples(
    backend: Any, suite: Suite, items: Sequence[TaskItem], mode: Mode, max_length: int
) -> tuple[list[Example], list[str]]:
    """Tokenize prompt and target as the backend does at inference; return the examples and the ids left out."""
    examples, skipped = [], []
    eos = backend.tokenizer.eos_token_id
    for item in items:
        target = target_text(suite, item, mode)
        if target is None:
            skipped.append(item.id)
            continue
        prompt_ids = backend.tokenize(render_prompt(suite, item, mode).text, add_bos=True)
        target_ids = backend.tokenize(target, add_bos=False)
        if not render_prompt(suite, item, mode).continuations and eos is not None:
            target_ids.append(eos)
        if not target_ids or len(prompt_ids) + len(target_ids) > max_length:
            skipped.append(item.id)
            continue
        examples.append(Example(item.id, tuple(prompt_ids), tuple(target_ids)))
    return examples, skipped


class TrainProgress:
    """Callbacks the loop calls; the CLI draws a progress bar with the loss from them."""

    def started(self, total_steps: int, done_steps: int) -> None: ...

    def step(self, epoch: int, loss: float) -> None: ...

    def evaluated(self, epoch: int, train_loss: float, validation_loss: float | None) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class _State:
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished within the current epoch
    steps: int = 0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    loss_sum: float = 0.0  # current epoch so far
    loss_tokens: int = 0
    train_loss: list[float] | None = None
    validation_loss: list[float] | None = None
    seconds: float = 0.0
    resumed: int = 0
    stopped: str = ""


def train(
    backend: Any,
    train_examples: Sequence[Example],
    validation_examples: Sequence[Example],
    settings: LoraSettings,
    folder: Path,
    identity: str,
    progress: TrainProgress | None = None,
) -> TrainingRecord:
    """Train a LoRA adapter on ``backend.model`` and save the best one (lowest validation loss) in ``folder``.

    ``identity`` names the run (base model, data and settings); a checkpoint in ``folder`` with the same
    identity is resumed, one with another identity is refused.
    """
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    progress = progress or TrainProgress()
    if not train_examples:
        raise FinetuneError("no training examples", "the training items need gold answers the model can write")
    device = backend.device
    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # transformers 5 deprecates a property peft still reads
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(backend.model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    checkpoint = folder / CHECKPOINT
    state = _State(train_loss=[], validation_loss=[])
    if (checkpoint / "state.json").exists():
        saved = json.loads((checkpoint / "state.json").read_text())
        if saved.get("identity") != identity:
            raise FinetuneError(
                f"{folder} holds a checkpoint of a different fine-tune (other data, model or settings)",
                "pass --fresh to discard it, or choose another --name",
            )
        state = _State(**saved["state"])
        state.resumed += 1
        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter" / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=device, weights_only=True))
        progress.message(f"resuming from the checkpoint after {state.steps} steps (epoch {state.epoch + 1})")
    batches_per_epoch = -(-len(train_examples) // settings.batch_size)
    progress.started(batches_per_epoch * settings.epochs, state.steps)
    pad = backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else 0
    base: Any = model.get_base_model()
    decoder: Any = base.get_decoder()
    head: Any = base.get_output_embeddings()
    cap = getattr(base.config, "final_logit_softcapping", None)

    def loss_of(batch: Sequence[Example]) -> tuple[Any, int]:
        """Summed cross-entropy over the target tokens of a right-padded batch, and their count."""
        width = max(len(e.prompt) + len(e.target) for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, labels = [], [], []
        for row, example in enumerate(batch):
            sequence = example.prompt + example.target
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
            for k, token in enumerate(example.target):  # position p predicts token p + 1
                rows.append(row)
                cols.append(len(example.prompt) + k - 1)
                labels.append(token)
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        logits = head(hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=device), reduction="sum")
        return loss, len(labels)

    def validation_loss() -> float | None:
        if not validation_examples:
            return None
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for begin in range(0, len(validation_examples), settings.batch_size):
                loss, n = loss_of(validation_examples[begin : begin + settings.batch_size])
                total, count = total + float(loss), count + n
        return total / count

    def save_checkpoint() -> None:
        partial = folder / (CHECKPOINT + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(str(partial / "adapter"), save_embedding_layers=False)
        torch.save(optimizer.state_dict(), partial / "optimizer.pt")
        (partial / "state.json").write_text(json.dumps({"identity": identity, "state": asdict(state)}))
        shutil.rmtree(checkpoint, ignore_errors=True)
        partial.rename(checkpoint)

    started = time.perf_counter()
    seconds_before = state.seconds
    assert state.train_loss is not None and state.validation_loss is not None
    with PeakRSS() as memory:
        while state.epoch < settings.epochs and not state.stopped:
            order = list(range(len(train_examples)))
            random.Random(settings.seed * 1_000_003 + state.epoch).shuffle(order)
            batches = [order[b : b + settings.batch_size] for b in range(0, len(order), settings.batch_size)]
            while state.batch < len(batches):
                torch.manual_seed(settings.seed * 1_000_003 + state.steps)  # dropout of this step
                model.train()
                loss_sum, count = loss_of([train_examples[i] for i in batches[state.batch]])
                optimizer.zero_grad()
                (loss_sum / count).backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                value = float(loss_sum.detach())
                state.loss_sum += value
                state.loss_tokens += count
                state.batch += 1
                state.steps += 1
                progress.step(state.epoch + 1, value / count)
                if state.steps % settings.checkpoint_every == 0 and state.batch < len(batches):
                    state.seconds = seconds_before + time.perf_counter() - started
                    save_checkpoint()
            train_loss = state.loss_sum / max(1, state.loss_tokens)
            validation = validation_loss()
            state.train_loss.append(train_loss)
            state.epoch += 1
            state.batch, state.loss_sum, state.loss_tokens = 0, 0.0, 0
            if validation is not None:
                state.validation_loss.append(validation)
            if validation is None or state.best is None or validation < state.best - 1e-4:
                state.best, state.best_epoch, state.bad_epochs = validation, state.epoch, 0
                # the best adapter so far (the last one, without validation items)
                model.save_pretrained(str(folder), save_embedding_layers=False)
            else:
                state.bad_epochs += 1
                if state.bad_epochs >= settings.patience:
                    state.stopped = "early stopping"
            progress.evaluated(state.epoch, train_loss, validation)
            state.seconds = seconds_before + time.perf_counter() - started
            save_checkpoint()
    trainable = sum(p.numel() for p in params)
    return TrainingRecord(
        epochs_run=state.epoch,
        steps=state.steps,
        best_epoch=state.best_epoch,
        best_validation_loss=state.best,
        train_loss=[round(v, 5) for v in state.train_loss],
        validation_loss=[round(v, 5) for v in state.validation_loss],
        stopped=state.stopped or "max epochs",
        seconds=round(state.seconds, 2),
        peak_rss=memory.peak,
        device=str(device),
        dtype=str(backend.dtype).replace("torch.", ""),
        trainable_parameters=int(trainable),
        examples=len(train_examples),
        target_tokens=sum(len(e.target) for e in train_examples),
        resumed=state.resumed,
    )


def clear_checkpoint(folder: Path) -> None:
    shutil.rmtree(folder / CHECKPOINT, ignore_errors=True)
    shutil.rmtree(folder / (CHECKPOINT + ".partial"), ignore_errors=True)
