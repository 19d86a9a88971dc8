"""The cost profiles: own servers (CPU and GPU), electricity, cloud API prices and exchange rates, each figure
with its date and source; the shipped ``data/cost_profiles.yaml`` with a plan's ``costs:`` overrides merged on top
and checked, every problem named by its key. Also the workload a deployment must serve. The formulas that price
them are in :mod:`poccheck.analysis.cost`."""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from poccheck.errors import PocCheckError, did_you_mean

DEFAULT_DECODE_EFFICIENCY = 0.6
DEFAULT_PREFILL_EFFICIENCY = 0.5

SERVER_SECTIONS = ("onprem_cpu", "onprem_gpu")
SECTIONS = (*SERVER_SECTIONS, "electricity_price_per_kwh", "cloud_apis", "exchange_rates")

# name -> (required, kind, minimum, minimum is exclusive, maximum); kind "number", "int", "date" (YYYY-MM), "day"
# (YYYY-MM-DD or YYYY-MM), "bool" or "text"
_SERVER_FIELDS: dict[str, tuple[bool, str, float | None, bool, float | None]] = {
    "purchase_price": (True, "number", 0, False, None),
    "lifetime_years": (True, "number", 0, True, None),
    "power_watts": (True, "number", 0, False, None),
    "utilisation": (True, "number", 0, True, 1),
    "operations_per_year": (True, "number", 0, False, None),
    "memory_gib": (True, "number", 0, True, None),
    "memory_bandwidth_gbs": (True, "number", 0, True, None),
    "compute_tflops": (True, "number", 0, True, None),
    "decode_efficiency": (False, "number", 0, True, 1),
    "prefill_efficiency": (False, "number", 0, True, 1),
    "cores": (False, "int", 0, True, None),
    "gpu_memory_gib": (False, "number", 0, True, None),
    "gpus": (False, "int", 0, True, None),
    "date": (True, "date", None, False, None),
    "source": (True, "text", None, False, None),
}
_ELECTRICITY_FIELDS: dict[str, tuple[bool, str, float | None, bool, float | None]] = {
    "value": (True, "number", 0, False, None),
    "date": (True, "date", None, False, None),
    "source": (True, "text", None, False, None),
}
_CLOUD_FIELDS: dict[str, tuple[bool, str, float | None, bool, float | None]] = {
    "input_per_million": (True, "number", 0, False, None),
    "output_per_million": (True, "number", 0, False, None),
    "date": (True, "date", None, False, None),
    "source": (True, "text", None, False, None),
    "retrieved": (False, "day", None, False, None),  # when the source was read (or the page's own date)
    "confirmed": (False, "bool", None, False, None),  # the source states exactly this price for this model
    "retired": (False, "bool", None, False, None),  # the provider has shut the model down
}
_CLOUD_FIGURES = ("input_per_million", "output_per_million")
PRICE_MAX_AGE_MONTHS = 6
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DAY = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")

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
    text = resources.files("poccheck").joinpath("data/cost_profiles.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PocCheckError("the packaged cost_profiles.yaml is not a mapping; the installation is broken")
    return data


def _load(overrides: Mapping[str, Any] | None) -> tuple[CostProfiles | None, list[tuple[KeyPath, str]]]:
    base = _shipped()
    problems: list[tuple[KeyPath, str]] = []
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        return None, [((), "must be a mapping (same keys as cost_profiles.yaml)")]
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in base.items()}
    for key, value in overrides.items():
        name = str(key)
        if name not in SECTIONS:
            problems.append(((name,), f"unknown key{did_you_mean(name, SECTIONS)}"))
        elif name == "electricity_price_per_kwh" and _is_number(value):
            _override_section(merged.setdefault(name, {}), (name,), {"value": value}, _ELECTRICITY_FIELDS, problems)
        elif not isinstance(value, Mapping):
            problems.append(((name,), "must be a mapping"))
        elif name in SERVER_SECTIONS:
            _override_section(merged.setdefault(name, {}), (name,), value, _SERVER_FIELDS, problems)
        elif name == "electricity_price_per_kwh":
            _override_section(merged.setdefault(name, {}), (name,), value, _ELECTRICITY_FIELDS, problems)
        elif name == "cloud_apis":
            _override_cloud(merged, value, problems)
        else:
            _override_rates(merged, value, problems)
    profiles = _build(merged, problems)
    return (None if problems else profiles), problems


def _override_section(
    target: dict[str, Any],
    path: KeyPath,
    value: Mapping[str, Any],
    fields: Mapping[str, tuple[bool, str, float | None, bool, float | None]],
    problems: list[tuple[KeyPath, str]],
) -> None:
    changed = []
    for key, item in value.items():
        name = str(key)
        if name not in fields:
            problems.append(((*path, name), f"unknown key{did_you_mean(name, tuple(fields))}"))
            continue
        target[name] = item
        if name not in ("date", "source"):
            changed.append(name)
    _credit_override(target, value, changed, "figures")


def _credit_override(target: dict[str, Any], value: Mapping[str, Any], changed: list[str], others: str) -> None:
    """When a plan changes figures without giving a source, say so instead of crediting the shipped source."""
    if changed and "source" not in value and "source" in target:
        target["source"] = f"plan override of {', '.join(changed)} (undated); other {others}: {target['source']}"


def _override_cloud(merged: dict[str, Any], value: Mapping[str, Any], problems: list[tuple[KeyPath, str]]) -> None:
    cloud = merged.setdefault("cloud_apis", {})
    for model, entry in value.items():
        name = str(model)
        if not isinstance(entry, Mapping):
            problems.append((("cloud_apis", name), "must be a mapping of input_per_million, output_per_million"))
            continue
        target = dict(cloud.get(name) or {})
        _override_section(target, ("cloud_apis", name), entry, _CLOUD_FIELDS, problems)
        if any(str(key) in _CLOUD_FIGURES for key in entry):
            # a price of the plan's own: the shipped date, retrieval and confirmation were of another figure
            for key, unknown in (("date", ""), ("retrieved", ""), ("confirmed", False)):
                if key not in entry:
                    target[key] = unknown
        target.setdefault("source", "given in the plan (no source stated)")
        target.setdefault("date", "")
        cloud[name] = target


def _override_rates(merged: dict[str, Any], value: Mapping[str, Any], problems: list[tuple[KeyPath, str]]) -> None:
    rates = merged.setdefault("exchange_rates", {})
    changed = []
    for key, rate in value.items():
        name = str(key)
        if name not in ("date", "source") and not _CURRENCY.match(name):
            problems.append((("exchange_rates", name), "unknown key: use a currency code such as JPY, or date/source"))
            continue
        rates[name] = rate
        if name not in ("date", "source"):
            changed.append(name)
    _credit_override(rates, value, changed, "rates")


def _build(merged: dict[str, Any], problems: list[tuple[KeyPath, str]]) -> CostProfiles | None:
    servers = {}
    for name in SERVER_SECTIONS:
        values = _check_fields(merged.get(name), (name,), _SERVER_FIELDS, problems)
        servers[name] = ServerProfile(name=name, **values) if values is not None else None
    electricity = _check_fields(
        merged.get("electricity_price_per_kwh"), ("electricity_price_per_kwh",), _ELECTRICITY_FIELDS, problems
    )
    cloud: dict[str, CloudPrice] = {}
    for model, entry in (merged.get("cloud_apis") or {}).items():
        values = _check_fields(entry, ("cloud_apis", str(model)), _CLOUD_FIELDS, problems)
        if values is not None:
            cloud[str(model)] = CloudPrice(name=str(model), **values)
    raw_rates = dict(merged.get("exchange_rates") or {})
    rates_date = raw_rates.pop("date", "")
    rates_source = raw_rates.pop("source", "")
    rates: dict[str, float] = {}
    for currency, rate in raw_rates.items():
        if not _is_number(rate) or rate <= 0:
            problems.append((("exchange_rates", str(currency)), f"must be a number above 0, not {rate!r}"))
        else:
            rates[str(currency)] = float(rate)
    if "USD" in rates and rates["USD"] != 1.0:
        problems.append((("exchange_rates", "USD"), "must be 1.0: rates are units of currency per 1 USD"))
    rates.setdefault("USD", 1.0)
    cpu, gpu = servers["onprem_cpu"], servers["onprem_gpu"]
    if problems or cpu is None or gpu is None or electricity is None:
        return None
    return CostProfiles(
        onprem_cpu=cpu,
        onprem_gpu=gpu,
        electricity_price_per_kwh=float(electricity["value"]),
        cloud=cloud,
        exchange_rates=rates,
        electricity_date=str(electricity["date"]),
        electricity_source=str(electricity["source"]),
        exchange_rates_date=str(rates_date),
        exchange_rates_source=str(rates_source),
    )


def _check_fields(
    raw: Any,
    path: KeyPath,
    fields: Mapping[str, tuple[bool, str, float | None, bool, float | None]],
    problems: list[tuple[KeyPath, str]],
) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.append((path, "must be a mapping"))
        return None
    values: dict[str, Any] = {}
    count = len(problems)
    for name, (required, kind, low, exclusive, high) in fields.items():
        value = raw.get(name)
        where = (*path, name)
        if value is None:
            if required:
                problems.append((where, "missing"))
            continue
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                problems.append((where, "must be a non-empty text"))
            values[name] = str(value).strip()
            continue
        if kind == "date":
            if not isinstance(value, str) or not (_DATE.match(value) or value == ""):
                problems.append((where, f'must be a year and month such as "2025-01", not {value!r}'))
            values[name] = str(value)
            continue
        if kind == "day":
            if isinstance(value, _dt.date):  # YAML reads an unquoted 2026-12-03 as a date, which JSON cannot store
                problems.append((where, f'must be quoted text such as "{value.isoformat()}", not an unquoted date'))
            elif not (value == "" or _parse_day(value) is not None):
                example = 'a date such as "2026-12-03" or a month such as "2026-12"'
                problems.append((where, f"must be {example}, not {value!r}"))
            values[name] = str(value)
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                problems.append((where, f"must be true or false, not {value!r}"))
            values[name] = bool(value)
            continue
        if not _is_number(value) or (kind == "int" and not isinstance(value, int)):
            problems.append((where, f"must be {'a whole number' if kind == 'int' else 'a number'}, not {value!r}"))
            continue
        too_low = low is not None and (value <= low if exclusive else value < low)
        if too_low or (high is not None and value > high):
            bound = f"above {low:g}" if exclusive else f"at least {low:g}"
            text = f"{bound} and at most {high:g}" if high is not None else bound
            problems.append((where, f"must be {text}, not {value!r}"))
            continue
        values[name] = int(value) if kind == "int" else float(value)
    return values if len(problems) == count else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- formulas
