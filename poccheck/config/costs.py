"""The cost profiles: own servers (CPU and GPU), electricity, cloud API prices and exchange rates, each figure
with its date and source; the shipped ``data/cost_profiles.yaml`` with a plan's ``cost_profiles:`` overrides merged
on top and checked against ``data/cost_profiles.schema.json``, every problem named by its key. Also the workload a
deployment must serve. The formulas that price them are in :mod:`poccheck.analysis.cost`."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, TypeChecker, ValidationError, validators

from poccheck.errors import PocCheckError, did_you_mean

DEFAULT_DECODE_EFFICIENCY = 0.6
DEFAULT_PREFILL_EFFICIENCY = 0.5


def _data(name: str) -> str:
    return resources.files("poccheck").joinpath(f"data/{name}").read_text(encoding="utf-8")


# the fields of every profile with their kinds and ranges (JSON Schema, Draft 2020-12); the merged profiles must fit
SCHEMA: dict[str, Any] = json.loads(_data("cost_profiles.schema.json"))
SERVER_SECTIONS = ("onprem_cpu", "onprem_gpu")
SECTIONS = tuple(SCHEMA["properties"])


def _finite_number(checker: TypeChecker, value: Any) -> bool:
    # not a bool (an int in Python), nor YAML's .inf or .nan, which JSON has not, nor an int too large for a float
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _whole_number(checker: TypeChecker, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON Schema would take 2.0 as a count


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({"number": _finite_number, "integer": _whole_number})
_CHECKER: type[Draft202012Validator] = validators.extend(  # type: ignore[no-untyped-call]  # untyped in the stubs
    Draft202012Validator, type_checker=_TYPES
)
_VALIDATOR = _CHECKER(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
_CLOUD_FIGURES = ("input_per_million", "output_per_million")
PRICE_MAX_AGE_MONTHS = 6
_DAY = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$")

KeyPath = tuple[str, ...]


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class ServerProfile:
    """One kind of own server. Money in USD; ``memory_bandwidth_gbs`` and ``compute_tflops`` are of the device
    that runs the model (the GPU when ``gpu_memory_gib`` is set, else the CPUs). GPU fields are None for CPU."""

    name: str
    purchase_price: float  # USD, whole server
    lifetime_years: float
    power_watts: float  # average under load
    utilisation: float  # 0..1, share of nominal capacity usable in practice
    operations_per_year: float  # USD/year
    memory_gib: float  # host memory
    memory_bandwidth_gbs: float  # GB/s, datasheet (or sustained, with an efficiency to match)
    compute_tflops: float  # TFLOPS, datasheet, before the efficiency factor of the projections
    date: str
    source: str
    cores: int | None = None
    gpu_memory_gib: float | None = None  # per GPU
    gpus: int | None = None
    decode_efficiency: float = DEFAULT_DECODE_EFFICIENCY  # share of memory_bandwidth_gbs reached when decoding
    prefill_efficiency: float = DEFAULT_PREFILL_EFFICIENCY  # share of compute_tflops reached in prefill

    @property
    def is_gpu(self) -> bool:
        return self.gpu_memory_gib is not None

    @property
    def model_memory_gib(self) -> float:
        """Memory that must hold the weights and KV cache: all GPUs' memory on a GPU server, else host memory."""
        if self.gpu_memory_gib is not None:
            return self.gpu_memory_gib * (self.gpus or 1)
        return self.memory_gib


@dataclass(frozen=True)
class CloudPrice:
    """A hosted model's list price in USD per million tokens, with where and when it was read.

    ``retrieved`` is the day (YYYY-MM-DD) or month (YYYY-MM) the ``source`` was read, or the page's own date
    when it states one; empty when unknown. ``confirmed`` is True only when the source states exactly this price
    for exactly this model (a price given in a plan without it is unconfirmed). ``retired``: the provider has
    shut the model down; its price is kept for comparison only."""

    name: str
    input_per_million: float
    output_per_million: float
    date: str
    source: str
    retrieved: str = ""
    confirmed: bool = False
    retired: bool = False

    def stale(self, today: _dt.date) -> bool:
        """Whether this price was retrieved more than six months before ``today`` (see
        :func:`older_than_six_months`); False when it has no retrieval date."""
        return older_than_six_months(self.retrieved, today)


def older_than_six_months(retrieved: str, today: _dt.date) -> bool:
    """Whether ``retrieved`` (YYYY-MM-DD or YYYY-MM) lies more than six calendar months before ``today``.

    The cut-off is the same day six months earlier (the month's last day when it has fewer days: 31 August ->
    28 or 29 February). A month-only date counts as its last day, so it is old only once the whole month is past
    the cut-off. An empty or unreadable date is not called old (the report shows it as undated instead).
    """
    day = _parse_day(retrieved, last=True)
    if day is None:
        return False
    months = today.year * 12 + today.month - 1 - PRICE_MAX_AGE_MONTHS
    year, month = divmod(months, 12)
    month += 1
    cutoff = _dt.date(year, month, min(today.day, _days_in_month(year, month)))
    return day < cutoff


def _days_in_month(year: int, month: int) -> int:
    following = _dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - _dt.timedelta(days=1)).day


def _parse_day(text: str, last: bool = False) -> _dt.date | None:
    """``text`` (YYYY-MM-DD, or YYYY-MM as the month's first or, with ``last``, last day) as a date; None if it is
    neither."""
    if not isinstance(text, str) or not _DAY.match(text):
        return None
    try:
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:])
            return _dt.date(year, month, _days_in_month(year, month) if last else 1)
        return _dt.date.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class CostProfiles:
    """Everything the cost model needs, each figure with when and where it comes from."""

    onprem_cpu: ServerProfile
    onprem_gpu: ServerProfile
    electricity_price_per_kwh: float  # USD
    cloud: dict[str, CloudPrice]
    exchange_rates: dict[str, float]  # units of currency per 1 USD
    electricity_date: str = ""
    electricity_source: str = ""
    exchange_rates_date: str = ""
    exchange_rates_source: str = ""

    def provenance(self) -> list[tuple[str, str, str]]:
        """(what, date, source) for every figure group, for a report's assumptions table."""
        rows = [
            (self.onprem_cpu.name, self.onprem_cpu.date, self.onprem_cpu.source),
            (self.onprem_gpu.name, self.onprem_gpu.date, self.onprem_gpu.source),
            ("electricity_price_per_kwh", self.electricity_date, self.electricity_source),
        ]
        rows += [(f"cloud:{p.name}", p.date, p.source) for p in self.cloud.values()]
        rows.append(("exchange_rates", self.exchange_rates_date, self.exchange_rates_source))
        return rows


@dataclass(frozen=True)
class Workload:
    """How much work the deployment must do. Token counts are per task (measured, or planned)."""

    tasks_per_day: float
    peak_concurrency: int
    input_tokens: float
    output_tokens: float
    hours_per_day: float = 24


# ---------------------------------------------------------------- loading


def load_profiles(overrides: Mapping[str, Any] | None = None) -> CostProfiles:
    """Load the shipped profiles, with ``overrides`` (a nested mapping, same keys as the YAML) merged on top.

    Overriding a figure without a ``source`` marks the section's source as overridden, so the report does not
    credit the shipped source for a number it did not give. Raises :class:`PocCheckError` naming every bad key.
    """
    profiles, problems = _load(overrides)
    if problems or profiles is None:
        listed = "\n".join(f"  cost_profiles.{'.'.join(path)}: {message}" for path, message in problems)
        raise PocCheckError(
            f"invalid cost profile override{'s' if len(problems) != 1 else ''}:\n{listed}",
            "use the keys of poccheck/data/cost_profiles.yaml",
        )
    return profiles


def override_problems(overrides: Mapping[str, Any] | None) -> list[tuple[KeyPath, str]]:
    """Problems with ``overrides``, each as (key path below ``cost_profiles``, message); empty when they are fine."""
    return _load(overrides)[1]


def _shipped() -> dict[str, Any]:
    data = yaml.safe_load(_data("cost_profiles.yaml"))
    if not isinstance(data, dict):
        raise PocCheckError("the packaged cost_profiles.yaml is not a mapping; the installation is broken")
    return data


def _load(overrides: Mapping[str, Any] | None) -> tuple[CostProfiles | None, list[tuple[KeyPath, str]]]:
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        return None, [((), "must be a mapping (same keys as cost_profiles.yaml)")]
    merged = _merge(_shipped(), overrides)
    problems = _problems(merged)
    return (None if problems else _build(merged)), problems


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` set over ``base`` key by key, whatever they hold: the schema judges the result."""
    merged = dict(base)
    for key, value in overrides.items():
        name = str(key)
        if name == "electricity_price_per_kwh" and _VALIDATOR.is_type(value, "number"):
            value = {"value": value}  # the price alone
        if name not in SECTIONS or not isinstance(value, Mapping):
            merged[name] = value
        elif name == "cloud_apis":
            merged[name] = _merge_cloud(merged.get(name), value)
        else:
            merged[name] = _merge_keys(merged.get(name), value, "rates" if name == "exchange_rates" else "figures")
    # a field left empty (null) counts as not given: a required one is missing, an optional one takes its default
    for name in (*SERVER_SECTIONS, "electricity_price_per_kwh"):
        if name in merged:
            merged[name] = _given(merged[name])
    if isinstance(merged.get("cloud_apis"), dict):
        merged["cloud_apis"] = {model: _given(entry) for model, entry in merged["cloud_apis"].items()}
    return merged


def _merge_keys(section: Any, value: Mapping[Any, Any], others: str) -> dict[str, Any]:
    """``section`` with the keys of ``value`` set. When a plan changes figures without giving a source, the source
    says so instead of crediting the shipped one."""
    target = dict(section) if isinstance(section, Mapping) else {}
    given = {str(key): item for key, item in value.items()}
    target.update(given)
    changed = [key for key in given if key not in ("date", "source")]
    if changed and "source" not in given and "source" in target:
        target["source"] = f"plan override of {', '.join(changed)} (undated); other {others}: {target['source']}"
    return target


def _merge_cloud(section: Any, value: Mapping[Any, Any]) -> dict[str, Any]:
    cloud = dict(section) if isinstance(section, Mapping) else {}
    for model, entry in value.items():
        name = str(model)
        if not isinstance(entry, Mapping):
            cloud[name] = entry
            continue
        target = _merge_keys(cloud.get(name), entry, "figures")
        if any(str(key) in _CLOUD_FIGURES for key in entry):
            # a price of the plan's own: the shipped date, retrieval and confirmation were of another figure
            for key, unknown in (("date", ""), ("retrieved", ""), ("confirmed", False)):
                if key not in entry:
                    target[key] = unknown
        target.setdefault("source", "given in the plan (no source stated)")
        target.setdefault("date", "")
        cloud[name] = target
    return cloud


def _given(value: Any) -> Any:
    return {key: item for key, item in value.items() if item is not None} if isinstance(value, dict) else value


# ---------------------------------------------------------------- checking


def _problems(merged: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Every way ``merged`` does not fit the schema, one (key path, message) per key: unknown keys first, then
    missing and wrong values, each by section (in the schema's order) and key path."""
    found: list[tuple[int, KeyPath, str]] = []
    for error in _VALIDATOR.iter_errors(merged):
        path = tuple(str(part) for part in error.absolute_path)
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        value = error.instance
        if error.validator == "additionalProperties" and isinstance(value, Mapping):
            named = schema.get("properties", {})
            extras = [str(key) for key in value if key not in named and not _patterned(str(key), schema)]
            found += [(0, (*path, key), _unknown(key, schema)) for key in extras]
        elif error.validator == "required" and isinstance(value, Mapping):
            found += [(1, (*path, str(key)), "missing") for key in error.validator_value if key not in value]
        else:
            found.append((1, path, _message(error)))
    found.sort(key=_order)
    problems: dict[KeyPath, str] = {}
    for _, path, message in found:
        problems.setdefault(path, message)  # the first the schema finds (a wrong type before a wrong value)
    return list(problems.items())


def _order(problem: tuple[int, KeyPath, str]) -> tuple[int, int, KeyPath]:
    kind, path, _ = problem
    section = SECTIONS.index(path[0]) if path and path[0] in SECTIONS else len(SECTIONS)
    return kind, section, path


def _message(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    value = error.instance
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"must be {_bounds(schema)}, not {value!r}"
    if isinstance(value, _dt.date) and _VALIDATOR.evolve(schema=schema).is_valid(value.isoformat()):
        # YAML reads an unquoted 2026-12-03 as a date, which JSON cannot store
        return f'must be quoted text such as "{value.isoformat()}", not an unquoted date'
    if "description" in schema:
        return f"must be {schema['description']}, not {value!r}"
    if error.validator == "type":
        kind = _KINDS.get(str(error.validator_value), str(error.validator_value))
        bounds = _bounds(schema).replace("at least", "of at least")
        return f"must be {kind}{' ' + bounds if bounds else ''}, not {value!r}"
    return error.message


_KINDS = {"object": "a mapping", "number": "a number", "integer": "a whole number", "string": "a text"}


def _bounds(schema: Mapping[str, Any]) -> str:
    low = ""
    if "exclusiveMinimum" in schema:
        low = f"above {schema['exclusiveMinimum']:g}"
    elif "minimum" in schema:
        low = f"at least {schema['minimum']:g}"
    high = f"at most {schema['maximum']:g}" if "maximum" in schema else ""
    return " and ".join(part for part in (low, high) if part)


def _unknown(key: str, schema: Mapping[str, Any]) -> str:
    named = tuple(schema.get("properties", {}))
    if schema.get("patternProperties"):  # exchange_rates: currency codes, and the keys it names
        others = "/".join(name for name in named if not _patterned(name, schema))
        return f"unknown key: use a currency code such as JPY, or {others}"
    return f"unknown key{did_you_mean(key, named)}"


def _patterned(key: str, schema: Mapping[str, Any]) -> bool:
    return any(re.search(pattern, key) for pattern in schema.get("patternProperties", {}))


def _resolved(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return _resolved(SCHEMA["$defs"][ref.removeprefix("#/$defs/")]) if isinstance(ref, str) else schema


# ---------------------------------------------------------------- building


def _build(merged: dict[str, Any]) -> CostProfiles:
    """The profiles of ``merged``, which fits the schema."""
    sections = SCHEMA["properties"]
    cpu, gpu = (ServerProfile(name=name, **_values(merged[name], sections[name])) for name in SERVER_SECTIONS)
    electricity = _values(merged["electricity_price_per_kwh"], sections["electricity_price_per_kwh"])
    price = sections["cloud_apis"]["additionalProperties"]
    cloud = {
        name: CloudPrice(name=name, **_values(entry, price)) for name, entry in merged.get("cloud_apis", {}).items()
    }
    rates = _values(merged.get("exchange_rates", {}), sections["exchange_rates"])
    rates_date, rates_source = rates.pop("date", ""), rates.pop("source", "")
    rates.setdefault("USD", 1.0)
    return CostProfiles(
        onprem_cpu=cpu,
        onprem_gpu=gpu,
        electricity_price_per_kwh=electricity["value"],
        cloud=cloud,
        exchange_rates=rates,
        electricity_date=electricity["date"],
        electricity_source=electricity["source"],
        exchange_rates_date=rates_date,
        exchange_rates_source=rates_source,
    )


def _values(raw: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``raw`` as a profile holds them: texts without surrounding blanks, numbers as floats unless
    the schema asks for whole numbers."""
    fields = _resolved(schema).get("properties", {})
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _resolved(fields[key]).get("type") if key in fields else None
        if isinstance(value, str):
            value = value.strip()
        elif isinstance(value, int | float) and not isinstance(value, bool) and kind != "integer":
            value = float(value)
        values[key] = value
    return values


# ---------------------------------------------------------------- formulas
