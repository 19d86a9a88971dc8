"""The assessment plan (``poccheck.yaml``): which tasks, which candidate models, what is good enough, and the
workload that sizes servers and costs.

The file is checked against a JSON Schema (Draft 2020-12) and then for things a schema cannot see (task files
that do not exist, cost-profile overrides with unknown keys). Every problem is collected, each with the file,
line and field, and reported at once as a :class:`~poccheck.errors.PlanError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

from poccheck import endpoints as served
from poccheck.config.costs import CostProfiles, Workload, load_profiles, override_problems
from poccheck.errors import PlanError, PocCheckError, Problem, did_you_mean
from poccheck.records import MODES, PROMPT_FORMATS, Mode, PromptFormat
from poccheck.tasks.read import LineDict, decode_text, load_yaml

CURRENCIES = ("JPY", "USD")
LANGUAGES = ("ja", "en")
DEFAULT_PLAN_NAME = "poccheck.yaml"

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_NAMES = {"type": ["array", "string"], "minItems": 1, "minLength": 1, "items": {"type": "string", "minLength": 1}}

_MODES = {"type": ["array", "string"], "minItems": 1, "uniqueItems": True, "items": {"enum": list(MODES)}}
# a candidate with its own prompting modes, e.g. a second backend of the same weights run only for its evidence
_CANDIDATE = {
    "type": "object",
    "required": ["model"],
    "additionalProperties": False,
    "properties": {"model": {"type": "string", "minLength": 1}, "modes": _MODES},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "poccheck assessment plan",
    "type": "object",
    "required": ["tasks", "candidates", "targets", "workload"],
    "additionalProperties": False,
    "properties": {
        "tasks": _NAMES,
        "candidates": {
            "type": ["array", "string"],
            "minItems": 1,
            "minLength": 1,
            "uniqueItems": True,
            "items": {"anyOf": [{"type": "string", "minLength": 1}, _CANDIDATE]},
        },
        "modes": _MODES,
        "prompt_format": {"enum": list(PROMPT_FORMATS)},
        "targets": {
            "type": "object",
            "required": ["accuracy"],
            "additionalProperties": False,
            "properties": {
                "accuracy": {**_FRACTION, "type": ["number", "object"], "additionalProperties": _FRACTION},
                "p95_latency_seconds": _POSITIVE,
                "use_lower_bound": {"type": "boolean"},
            },
        },
        "workload": {
            "type": "object",
            "required": ["tasks_per_day", "peak_concurrency"],
            "additionalProperties": False,
            "properties": {
                "tasks_per_day": _POSITIVE,
                "peak_concurrency": {"type": "integer", "minimum": 1},
                "hours_per_day": {**_POSITIVE, "maximum": 24},
                "input_tokens": _POSITIVE,
                "output_tokens": _POSITIVE,
            },
        },
        "currency": {"enum": list(CURRENCIES)},
        "exchange_rate": _POSITIVE,
        "language": {"enum": list(LANGUAGES)},
        "cost_profiles": {"type": ["object", "null"]},
        "endpoints": {"type": "object", "additionalProperties": served.ENDPOINT_SCHEMA},
        "out": {"type": "string", "minLength": 1},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

_TYPE_WORDS = {
    "array": "a list",
    "string": "a text",
    "object": "a mapping of keys",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "empty",
}


@dataclass(frozen=True)
class Targets:
    """What "good enough" means: minimum accuracy per task group (category), and latency."""

    accuracy: dict[str, float]  # category -> minimum accuracy 0..1; "default" applies to other categories
    p95_latency_seconds: float | None = None
    use_lower_bound: bool = True  # judge by the lower 95% CI bound rather than the point estimate

    def accuracy_for(self, category: str) -> float | None:
        """The minimum accuracy for ``category``, else the default, else None (no target)."""
        return self.accuracy.get(category, self.accuracy.get("default"))


@dataclass(frozen=True)
class PlanWorkload:
    """The production workload. Token counts per task are optional: measured counts are preferred."""

    tasks_per_day: float
    peak_concurrency: int
    hours_per_day: float = 24
    input_tokens: float | None = None
    output_tokens: float | None = None

    def to_workload(
        self, measured_input_tokens: float | None = None, measured_output_tokens: float | None = None
    ) -> Workload:
        """A cost :class:`Workload`, with measured token counts where given, else the planned ones.

        Raises ValueError when a count is neither measured nor planned.
        """
        input_tokens = measured_input_tokens if measured_input_tokens is not None else self.input_tokens
        output_tokens = measured_output_tokens if measured_output_tokens is not None else self.output_tokens
        if input_tokens is None or output_tokens is None:
            raise ValueError("token counts per task are neither measured nor given in the plan's workload")
        return Workload(self.tasks_per_day, self.peak_concurrency, input_tokens, output_tokens, self.hours_per_day)


@dataclass(frozen=True)
class Plan:
    """A checked plan; paths are absolute (resolved against the plan file's folder)."""

    path: Path
    tasks: tuple[Path, ...]
    candidates: tuple[str, ...]
    modes: tuple[Mode, ...]
    targets: Targets
    workload: PlanWorkload
    currency: str = "JPY"
    exchange_rate: float | None = None  # USD -> JPY
    language: str = "ja"
    cost_profiles: dict[str, Any] = field(default_factory=dict)
    out: Path = Path("poc")
    endpoints: tuple[served.Endpoint, ...] = ()  # served models, candidates NAME@openai
    prompt_format: PromptFormat | None = None  # overrides every suite's prompt_format (--prompt-format overrides it)
    candidate_modes: Mapping[str, tuple[Mode, ...]] = field(default_factory=dict)  # candidates with their own modes

    def modes_of(self, spec: str) -> tuple[Mode, ...]:
        """The prompting modes a candidate runs in: its own, else the plan's."""
        return self.candidate_modes.get(spec, self.modes)

    def profiles(self) -> CostProfiles:
        """The shipped cost profiles with this plan's overrides and exchange rate applied."""
        overrides = {
            key: (dict(value) if isinstance(value, Mapping) else value) for key, value in self.cost_profiles.items()
        }
        if self.exchange_rate is not None:
            rates = dict(overrides.get("exchange_rates") or {})
            rates.update({"JPY": self.exchange_rate, "source": "the plan's exchange_rate"})
            overrides["exchange_rates"] = rates
        return load_profiles(overrides)


# ---------------------------------------------------------------- loading


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file; raise :class:`TaskFileError` listing every problem."""
    plan_path = Path(path)
    name = str(plan_path)
    if not plan_path.is_file():
        what = "is a directory, not a plan file" if plan_path.is_dir() else "plan file not found"
        raise PlanError([Problem(name, None, None, what)])
    try:
        data = plan_path.read_bytes()
    except OSError as exc:
        raise PlanError([Problem(name, None, None, f"cannot read file: {exc.strerror}")]) from None
    text, problems = decode_text(plan_path, data)
    if text is None:
        raise PlanError(problems)
    plan, problems = parse_plan(text.lstrip("\ufeff"), plan_path)
    if problems or plan is None:
        raise PlanError(problems)
    return plan


def parse_plan(text: str, path: Path) -> tuple[Plan | None, list[Problem]]:
    """Check plan ``text`` (read from ``path``, against whose folder relative paths resolve).

    Returns the plan, or None and every problem found.
    """
    name = str(path)
    try:
        doc = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, [Problem(name, mark.line + 1 if mark else None, None, f"invalid YAML: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, None, None, f"invalid YAML: {exc}")]
    except RecursionError:
        return None, [Problem(name, None, None, "invalid YAML: nested too deeply")]
    if doc is None:
        return None, [Problem(name, None, None, "file is empty")]
    if not isinstance(doc, LineDict):
        return None, [Problem(name, 1, None, "a plan must be a mapping of settings (tasks:, candidates:, ...)")]

    problems = _duplicates(name, doc, ())
    schema_errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    for error in schema_errors:
        problems += _schema_problems(name, doc, error)
    bad = {tuple(error.absolute_path)[:1] for error in schema_errors}
    base = path.resolve().parent
    if ("modes",) not in bad and isinstance(doc.get("modes"), str) and doc["modes"] not in MODES:
        problems.append(
            _problem(name, doc, ("modes",), f"unknown mode {doc['modes']!r}{_choices(doc['modes'], MODES)}")
        )
    candidates: dict[str, tuple[Mode, ...] | None] = {}
    if ("candidates",) not in bad and "candidates" in doc:
        candidates, found = _candidates(name, doc)
        problems += found
    tasks: list[Path] = []
    if ("tasks",) not in bad and "tasks" in doc:
        for index, entry in enumerate(_as_list(doc["tasks"])):
            task_path = (base / entry).resolve()
            where: tuple[str | int, ...] = ("tasks", index) if isinstance(doc["tasks"], list) else ("tasks",)
            if not task_path.exists():
                problems.append(_problem(name, doc, where, f"task file not found: {task_path}"))
            elif task_path.is_dir():
                problems.append(_problem(name, doc, where, f"is a directory, not a task file: {task_path}"))
            tasks.append(task_path)
    overrides = doc.get("cost_profiles") or {}
    if ("cost_profiles",) not in bad:
        for key_path, message in override_problems(overrides):
            problems.append(_problem(name, doc, ("cost_profiles", *key_path), message))
    problems += _endpoint_problems(name, doc, bad)
    problems = sorted(dict.fromkeys(problems), key=lambda p: p.line or 0)  # one "required" error per missing key
    if problems:
        return None, problems

    targets = doc["targets"]
    accuracy = targets["accuracy"]
    workload = doc["workload"]
    plan = Plan(
        path=path.resolve(),
        tasks=tuple(tasks),
        candidates=tuple(candidates),
        candidate_modes={spec: modes for spec, modes in candidates.items() if modes is not None},
        modes=tuple(cast(Mode, m) for m in _as_list(doc.get("modes", ["fewshot"]))),
        targets=Targets(
            accuracy={"default": float(accuracy)}
            if not isinstance(accuracy, Mapping)
            else {str(k): float(v) for k, v in accuracy.items()},
            p95_latency_seconds=_float(targets.get("p95_latency_seconds")),
            use_lower_bound=bool(targets.get("use_lower_bound", True)),
        ),
        workload=PlanWorkload(
            tasks_per_day=float(workload["tasks_per_day"]),
            peak_concurrency=int(workload["peak_concurrency"]),
            hours_per_day=float(workload.get("hours_per_day", 24)),
            input_tokens=_float(workload.get("input_tokens")),
            output_tokens=_float(workload.get("output_tokens")),
        ),
        currency=str(doc.get("currency", "JPY")),
        exchange_rate=_float(doc.get("exchange_rate")),
        language=str(doc.get("language", "ja")),
        cost_profiles=_plain(overrides),
        out=(base / str(doc.get("out", "poc"))).resolve(),
        endpoints=tuple(served.from_plan(str(k), v) for k, v in (doc.get("endpoints") or {}).items()),
        prompt_format=cast(PromptFormat, doc["prompt_format"]) if "prompt_format" in doc else None,
    )
    return plan, []


def _endpoint_problems(name: str, doc: LineDict, bad: set[tuple[Any, ...]]) -> list[Problem]:
    """Candidates NAME@openai need an endpoint NAME; an endpoint's price must be a known cloud price profile."""
    problems: list[Problem] = []
    defined = doc.get("endpoints") or {}
    if not isinstance(defined, Mapping):
        return problems
    for key, entry in defined.items():
        if isinstance(entry, Mapping) and "api_key" in entry:
            message = "never write an API key in the plan: name the environment variable holding it with api_key_env"
            problems.append(_problem(name, doc, ("endpoints", key, "api_key"), message))
    if ("endpoints",) in bad:
        return problems
    if ("candidates",) not in bad and "candidates" in doc:
        listed = isinstance(doc["candidates"], list)
        for index, candidate in enumerate(_as_list(doc["candidates"])):
            target, _, backend = candidate.rpartition("@")
            if backend == "openai" and target not in defined:
                message = f"no endpoint named {target!r} under endpoints:{did_you_mean(target, list(defined))}"
                problems.append(_problem(name, doc, ("candidates", index) if listed else ("candidates",), message))
    if ("cost_profiles",) in bad:
        return problems
    try:
        cloud = list(load_profiles(_plain(doc.get("cost_profiles") or {})).cloud)
    except PocCheckError:  # invalid overrides are reported on their own
        return problems
    for key, entry in defined.items():
        price = entry.get("price") if isinstance(entry, Mapping) else None
        if isinstance(price, str) and price not in cloud:
            options = ", ".join(cloud) or "none"
            message = f"unknown price profile {price!r}{did_you_mean(price, cloud)}; cloud_apis profiles: {options}"
            problems.append(_problem(name, doc, ("endpoints", key, "price"), message))
    return problems


def _candidates(name: str, doc: LineDict) -> tuple[dict[str, tuple[Mode, ...] | None], list[Problem]]:
    """Each candidate model with its own prompting modes (None: the plan's), and the problems found."""
    entries = doc["candidates"]
    listed = entries if isinstance(entries, list) else [entries]
    found: dict[str, tuple[Mode, ...] | None] = {}
    problems = []
    for index, entry in enumerate(listed):
        where: tuple[str | int, ...] = ("candidates", index) if isinstance(entries, list) else ("candidates",)
        spec = str(entry["model"]) if isinstance(entry, Mapping) else str(entry)
        modes = entry.get("modes") if isinstance(entry, Mapping) else None
        if isinstance(modes, str) and modes not in MODES:
            problems.append(_problem(name, doc, (*where, "modes"), f"unknown mode {modes!r}{_choices(modes, MODES)}"))
        if spec in found:
            problems.append(_problem(name, doc, where, f"lists the candidate {spec!r} more than once"))
        found[spec] = None if modes is None else tuple(cast(Mode, m) for m in _as_list(modes))
    return found, problems


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _duplicates(name: str, node: Any, path: tuple[str | int, ...]) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, LineDict):
        for key, line in node.duplicates:
            problems.append(Problem(name, line, _field((*path, str(key))), "key given twice"))
        for key, value in node.items():
            problems += _duplicates(name, value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += _duplicates(name, value, (*path, index))
    return problems


def _field(path: Iterable[str | int]) -> str | None:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _line(doc: LineDict, path: Iterable[Any]) -> int | None:
    """The line of the deepest key of ``path`` present in ``doc`` (list items have no line of their own)."""
    node: Any = doc
    line: int | None = doc.line
    for part in path:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LineDict) and str(part) in {str(k) for k in node}:
            key = next(k for k in node if str(k) == str(part))
            line = node.key_lines.get(key, line)
            node = node[key]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, LineDict):
                line = node.line
        else:
            break
    return line


def _problem(name: str, doc: LineDict, path: tuple[Any, ...], message: str) -> Problem:
    return Problem(name, _line(doc, path), _field(path), message)


def _choices(word: str, options: tuple[str, ...]) -> str:
    return did_you_mean(word, options) or f"; use one of {', '.join(options)}"


def _schema_problems(name: str, doc: LineDict, error: jsonschema.ValidationError) -> list[Problem]:
    """Turn one schema error into problems a person can act on."""
    path = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    expected: Any = error.validator_value
    last = str(path[-1]) if path else ""
    if kind == "anyOf" and path[:1] == ("candidates",):
        if isinstance(value, Mapping):  # a candidate with its own settings: say what is wrong inside it
            inner = [e for e in error.context or () if e.relative_schema_path[0] == 1]
            return [p for e in inner for p in _schema_problems(name, doc, e)]
        return [_problem(name, doc, path, "must be a model name, or a mapping with model: and modes:")]
    if kind == "additionalProperties" and isinstance(value, Mapping):
        known = tuple(schema.get("properties", {}))
        return [
            _problem(name, doc, (*path, key), f"unknown key {str(key)!r}{did_you_mean(str(key), known)}")
            for key in value
            if key not in known
        ]
    if kind == "required" and isinstance(value, Mapping):
        missing = [key for key in expected if key not in value]
        return [Problem(name, _line(doc, path), _field((*path, key)), "missing (required)") for key in missing]
    if kind == "enum":
        options = tuple(str(o) for o in expected)
        what = "mode" if "modes" in path else last or "value"
        return [_problem(name, doc, path, f"unknown {what} {value!r}{_choices(str(value), options)}")]
    if kind == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted if w != "null")
        return [_problem(name, doc, path, f"must be {words}, not {_TYPE_WORDS.get(_json_type(value), 'that')}")]
    if kind in ("minimum", "maximum", "exclusiveMinimum"):
        return [_problem(name, doc, path, _range_message(path, schema, value))]
    if kind in ("minItems", "minLength"):
        if path == ("candidates",):
            message = "at least one candidate model is needed"
        elif path == ("tasks",):
            message = "at least one task file is needed"
        else:
            message = "must not be empty"
        return [_problem(name, doc, path, message)]
    if kind == "pattern":
        formats = {"base_url": "a URL starting with http:// or https://", "api_key_env": "an environment variable name"}
        shown = "" if last == "api_key_env" else f", not {value!r}"  # never echo what may be a pasted key
        return [_problem(name, doc, path, f"must be {formats.get(last, repr(expected))}{shown}")]
    if kind == "uniqueItems":
        return [_problem(name, doc, path, "lists the same entry more than once")]
    return [_problem(name, doc, path, error.message)]


def _range_message(path: tuple[Any, ...], schema: Mapping[str, Any], value: Any) -> str:
    if "exclusiveMinimum" in schema and "maximum" in schema:
        bound = f"above {schema['exclusiveMinimum']:g} and at most {schema['maximum']:g}"
    elif "exclusiveMinimum" in schema:
        bound = f"above {schema['exclusiveMinimum']:g}"
    elif "maximum" in schema:
        bound = f"between {schema['minimum']:g} and {schema['maximum']:g}"
    else:
        bound = f"at least {schema['minimum']:g}"
    hint = " (a fraction: 0.9 means 90%)" if "accuracy" in path else ""
    return f"must be {bound}{hint}, not {value!r}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, Mapping) else "other"


# ---------------------------------------------------------------- template


def default_plan_text() -> str:
    """A fully commented plan for the bundled example suite and model (English, with Japanese glosses)."""
    return _DEFAULT_PLAN


_DEFAULT_PLAN = """\
# poccheck assessment plan / poccheck 評価計画
#
# Which model size, run where, is good enough for our work, and at what cost?
# Paths are relative to this file. Check it with poccheck; every problem is listed with its line.

# Task files: what the models must do (YAML, CSV, JSON Lines or Excel).
# 評価タスク（業務の問題集ファイル）
tasks:
  - examples/factory_suite.yaml
  - examples/factory_tasks.csv

# Candidate models to compare: a bundled name, a .gguf path, or name@backend
# (e.g. gemma3-270m-q4@transformers); {model: NAME, modes: [fewshot]} runs one only in the modes given.
# 候補モデル
candidates:
  - gemma3-270m-q4

# Prompting modes: direct (question only), fewshot (the suite's worked examples first),
# cot (asks for step-by-step reasoning).
# プロンプト方式
modes: [fewshot]

# Prompt format: auto (a model's own chat template where it has one, else plain text), chat (always the
# template; a model without one fails), raw (plain text, the published study's protocol). Leave it out to use
# each task file's prompt_format (default auto).
# プロンプト形式（auto：チャットテンプレートがあれば使用、chat：常に使用、raw：素のテキスト）
# prompt_format: auto

# What "good enough" means.
# 合格基準
targets:
  # Minimum accuracy (0 to 1) per task category; "default" applies to categories not listed.
  # 目標精度（カテゴリ別、0〜1。default は記載のないカテゴリに適用）
  accuracy:
    default: 0.8
    inspection-rules: 0.9
  # Slowest acceptable response, in seconds, for 95% of tasks.
  # 応答時間の上限（95パーセンタイル、秒）
  p95_latency_seconds: 5.0
  # true: judge accuracy by the lower end of its 95% confidence interval (cautious with few tasks);
  # false: by the measured accuracy itself.
  # 信頼区間の下限で判定するか（true 推奨）
  use_lower_bound: true

# The production workload; it sizes the servers and the monthly cost.
# 想定業務量
workload:
  tasks_per_day: 2000
  peak_concurrency: 4      # requests at the same time at the busiest moment / 同時リクエスト数
  hours_per_day: 10        # hours the work is spread over / 稼働時間（時間/日）
  # Tokens per task, used only where a run did not measure them.
  # 1件あたりのトークン数（実測がない場合のみ使用）
  input_tokens: 300
  output_tokens: 60

# Currency of the report: JPY or USD.
# 通貨
currency: JPY

# Yen per US dollar; leave it out to use the shipped indicative rate.
# 為替レート（1ドルあたりの円、省略時は同梱の参考値）
# exchange_rate: 150

# Report language: ja or en.
# レポートの言語
language: ja

# Your own prices, merged over the shipped indicative ones (keys as in poccheck/data/cost_profiles.yaml;
# money in USD), for example:
#   onprem_gpu: {purchase_price: 31000, source: "vendor quote, 2025-06"}
#   electricity_price_per_kwh: 0.18
# コスト前提の上書き（自社の見積もり・電気料金など、USD）
cost_profiles: {}

# Folder for results and the report.
# 出力先フォルダ
out: poc
"""


def plan_record(plan: Plan) -> dict[str, Any]:
    """The whole plan as JSON-ready data, stored with the results in the run manifest (:func:`plan_from_record`
    reads it back)."""
    return {
        "path": str(plan.path),
        "tasks": [str(p) for p in plan.tasks],
        "candidates": list(plan.candidates),
        "modes": list(plan.modes),
        "candidate_modes": {spec: list(modes) for spec, modes in plan.candidate_modes.items()},
        "targets": {
            "accuracy": dict(plan.targets.accuracy),
            "p95_latency_seconds": plan.targets.p95_latency_seconds,
            "use_lower_bound": plan.targets.use_lower_bound,
        },
        "workload": {
            "tasks_per_day": plan.workload.tasks_per_day,
            "peak_concurrency": plan.workload.peak_concurrency,
            "hours_per_day": plan.workload.hours_per_day,
            "input_tokens": plan.workload.input_tokens,
            "output_tokens": plan.workload.output_tokens,
        },
        "currency": plan.currency,
        "exchange_rate": plan.exchange_rate,
        "language": plan.language,
        "cost_profiles": plan.cost_profiles,
        "out": str(plan.out),
        "endpoints": [served.endpoint_record(e) for e in plan.endpoints],
        "prompt_format": plan.prompt_format,
    }


def plan_from_record(record: dict[str, Any]) -> Plan:
    """The plan :func:`plan_record` stored. Records of earlier versions kept only what a report needs (no tasks,
    candidates, modes, endpoints or folder): those parts come back empty or at their defaults."""
    return Plan(
        path=Path(record["path"]),
        tasks=tuple(Path(p) for p in record.get("tasks", ())),
        candidates=tuple(record.get("candidates", ())),
        modes=tuple(record.get("modes", ("fewshot",))),
        targets=Targets(**record["targets"]),
        workload=PlanWorkload(**record["workload"]),
        currency=record["currency"],
        exchange_rate=record["exchange_rate"],
        language=record["language"],
        cost_profiles=record["cost_profiles"],
        out=Path(record.get("out", "poc")),
        endpoints=tuple(served.Endpoint(**e) for e in record.get("endpoints", ())),
        prompt_format=record.get("prompt_format"),
        candidate_modes={spec: tuple(modes) for spec, modes in record.get("candidate_modes", {}).items()},
    )
