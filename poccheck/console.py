"""Terminal output: rich tables and the progress bar (items done, items/s, ETA)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from poccheck import runner
from poccheck.analysis import Findings
from poccheck.analysis.finetune import FinetuneFindings
from poccheck.finetune.train import TrainProgress
from poccheck.pipeline import Comparison, ModelEntry
from poccheck.report.render import ENGLISH, ci

count, seconds, size = ENGLISH.count, ENGLISH.seconds, ENGLISH.bytes

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} items/s" if speed else "– items/s", style="cyan")


def _progress_bar(detail: ProgressColumn) -> Progress:
    """The bar poccheck shows for long work: what, how far, ``detail`` (a rate or the loss), time and ETA."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        detail,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class ProgressBar(runner.Progress):
    """Drives a rich progress bar from the runner's callbacks."""

    def __init__(self) -> None:
        self._progress = _progress_bar(RateColumn())
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def model_started(self, model: str, total: int, skipped: int) -> None:
        note = f" (resuming: {skipped} done)" if skipped else ""
        self._task = self._progress.add_task(escape(f"{model}{note}"), total=total - skipped)

    def advance(self, count: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)

    def model_finished(self, outcome: runner.ModelOutcome) -> None:
        if outcome.failed_items:
            self.message(f"{outcome.model}: {outcome.failed_items} item(s) failed; see the report", "yellow")
        self._task = None

    def message(self, text: str, style: str = "") -> None:
        self._progress.console.print(Text(text, style=style))


def models_table(entries: list[ModelEntry]) -> Table:
    """Known models; a packaged model that is not installed shows its published size and how to install it."""
    table = Table(title="Known models")
    table.add_column("Model", no_wrap=True)
    for column in ("Parameters", "Quantisation", "File size", "Context", "Backend"):
        table.add_column(column, no_wrap=True)
    table.add_column("Path / problem", overflow="fold")
    for entry in entries:
        info, packaged = entry.info, entry.packaged
        if info is None and packaged is not None:
            problem = (
                Text(f"not installed; install with: {entry.install}", style="yellow")
                if entry.install
                else Text(entry.error or "", style="red")
            )
            table.add_row(
                escape(entry.spec), count(packaged.parameters), packaged.quantization, size(packaged.size), "–",
                "llama.cpp", problem,
            )  # fmt: skip
            continue
        if info is None:
            table.add_row(escape(entry.spec), "–", "–", "–", "–", "–", Text(entry.error or "", style="red"))
            continue
        table.add_row(
            escape(entry.spec),
            count(info.parameters),
            info.quantization or "–",
            size(info.file_size),
            f"{info.context_length:,}" if info.context_length else "–",
            info.backend,
            escape(info.path),
        )
    return table


def findings_table(findings: Findings) -> Table:
    table = Table(title="Results")
    table.add_column("Model", no_wrap=True)
    for column in ("Accuracy [95% CI] (n)", "Latency p50 / p95", "Peak memory", "Errors"):
        table.add_column(column)
    for m in findings.models:
        if m.error and not m.rows:
            table.add_row(escape(m.label), Text(f"failed: {m.error.splitlines()[0]}", style="red"), "", "", "")
            continue
        table.add_row(
            escape(m.label),
            ci(m.accuracy),
            f"{seconds(m.latency_p50)} / {seconds(m.latency_p95)}",
            size(m.peak_rss),
            str(m.errors),
        )
    return table


def comparison_table(result: Comparison) -> Table:
    table = Table(title=f"{escape(result.first)}  vs  {escape(result.second)}")
    for column in (
        "Task group",
        "n",
        escape(result.first),
        escape(result.second),
        "Change",
        "Only first right",
        "Only second right",
        "p",
    ):
        table.add_column(column, overflow="fold")
    for d in result.diffs:
        change = (d.second.value - d.first.value) * 100
        significant = d.test.p_value < 0.05
        table.add_row(
            "all items" if d.overall else escape(d.group or ""), str(d.first.n), ci(d.first), ci(d.second),
            Text(f"{change:+.1f} pts", style="bold" if significant else ""),
            str(d.test.b), str(d.test.c), f"{d.test.p_value:.2g}" + ("" if significant else " (n.s.)"),
        )  # fmt: skip
    return table


class TrainingBar(TrainProgress):
    """A rich progress bar for ``poccheck finetune``: steps, the last loss, elapsed time and ETA."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._progress = _progress_bar(TextColumn("epoch {task.fields[epoch]} · loss {task.fields[loss]}"))
        self._task: TaskID | None = None

    def __enter__(self) -> TrainingBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, total_steps: int, done_steps: int) -> None:
        self._task = self._progress.add_task(
            escape(f"fine-tuning {self._name}"), total=total_steps, completed=done_steps, epoch=1, loss="–"
        )

    def step(self, epoch: int, loss: float) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=1, epoch=epoch, loss=f"{loss:.3f}")

    def evaluated(self, epoch: int, train_loss: float, validation_loss: float | None) -> None:
        checked = f", validation loss {validation_loss:.4f}" if validation_loss is not None else ""
        self.message(f"epoch {epoch}: training loss {train_loss:.4f}{checked}")

    def message(self, text: str) -> None:
        self._progress.console.print(Text(text))


def finetune_tables(analysis: FinetuneFindings) -> list[Table]:
    """Before/after on the held-out items and on the control suite, as paired comparisons."""
    tables = [comparison_table(Comparison(analysis.base, analysis.tuned, analysis.heldout))]
    tables[0].title = f"Held-out items: {analysis.base}  vs  {analysis.tuned}"
    if analysis.control:
        tables.append(comparison_table(Comparison(analysis.base, analysis.tuned, analysis.control)))
        tables[1].title = f"Control suite {analysis.control_suite} (forgetting)"
    return tables
