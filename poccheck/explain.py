"""``poccheck explain``: answer one item with a transformers model and write a page of where its attention went."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from poccheck import evidence, models, paths, report, runner
from poccheck.backends.hf import HFSettings, TransformersBackend
from poccheck.backends.registry import BackendOptions
from poccheck.errors import ModelError, Problem, TaskFileError, did_you_mean
from poccheck.grading import attention, grade_output
from poccheck.grading.attention import CopyScore
from poccheck.runner import Output
from poccheck.tasks import load_suites


@dataclass(frozen=True)
class Explanation:
    page: Path
    item_id: str
    answer: str
    correct: bool
    copy: CopyScore | None


def explain(
    model_spec: str,
    task_path: str | Path,
    item_id: str,
    out_file: Path | None = None,
    *,
    layer: int = -1,
    head: int | None = None,
    options: BackendOptions | None = None,
    encoding: str | None = None,
) -> Explanation:
    """Answer one item with a transformers model and write an HTML page of where its attention went."""
    suite = load_suites([task_path], encoding)[0]
    found = {item.id: item for item in suite.items}
    if item_id not in found:
        raise TaskFileError(
            [Problem(str(task_path), None, "id", f"no item {item_id!r}{did_you_mean(item_id, list(found))}")]
        )
    item = found[item_id]
    spec = models.parse_spec(model_spec)
    if spec.backend != "transformers":  # attention is read from PyTorch: same weights, transformers backend
        model_spec = f"{spec.target}@transformers"
    info = models.resolve(model_spec)
    options = options or BackendOptions()
    backend = TransformersBackend(info, HFSettings(device=options.device, dtype=options.dtype))
    try:
        planned = next(w for w in runner.work_items(suite) if w.item.id == item_id)
        formats = runner.suite_formats(backend, [suite], info.name)
        work = runner.for_format(planned, formats[suite.name], backend)
        if work.error:
            raise ModelError(work.error)
        if item.is_multiple_choice:
            scores = backend.score_choices([work.choice_request])[0]
            output = Output(choice_logprobs=scores.logprobs)
        else:
            completion = backend.generate(work.generation_request)
            output = Output(text=completion.text)
        grade = grade_output(item, output.text, output.choice_logprobs)
        answer = evidence.model_answer(item, output.text, output.choice_logprobs, work.prompt.continuations)
        capture = backend.capture_attention(work.prompt.text, answer, work.prompt.turns)
        try:
            shown = attention.view(capture, layer, head)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        gold = evidence.gold_text(item)
        if gold and work.prompt.turns:  # the assistant's reply starts right after the template's turn header
            gold = gold.lstrip()
        copy = None
        if gold:
            copy = attention.copy_score(backend.capture_attention(work.prompt.text, gold, work.prompt.turns))
    finally:
        backend.close()
    if item.is_multiple_choice:
        expected = item.gold_choice
    else:
        expected = item.answer if isinstance(item.answer, str) else json.dumps(item.answer, ensure_ascii=False)
    page = out_file or Path(f"explain-{paths.safe_name(item_id)}.html")
    report.render_explain(
        page, model=model_spec, item=item, answer=answer, expected=expected or "(schema)", correct=grade.correct,
        detail=grade.detail, view=shown, copy=copy,
    )  # fmt: skip
    return Explanation(page, item_id, answer, grade.correct, copy)
