"""What running a model costs: own servers (CPU or GPU) against paying a cloud API per token.

Pure functions over small frozen values; the profiles they price come from :mod:`poccheck.config.costs`.
All money is USD until :func:`convert`. Units: hours are wall-clock hours, a month is 730 hours or 30.4 days
(365 / 12), GB/s and TFLOPS are decimal (1e9 bytes, 1e12 operations), memory sizes are GiB (2**30 bytes).

Every derived figure is an :class:`Estimate` that says whether it was *projected* (from datasheet bandwidth
and compute, not measured) and how it was computed, so a report never passes a guess off as a measurement.

Formulas (each function's docstring repeats its own):

    server cost per hour  = purchase_price / (lifetime_years * 8760) + power_watts / 1000 * electricity
                            + operations_per_year / 8760
    servers needed        = max(1, ceil((tasks_per_day / hours_per_day) / (tasks_per_hour_per_server * utilisation)))
    on-prem per month     = servers * cost per hour * 730
    cost per 1000 tasks   = per month / (tasks_per_day * 30.4 / 1000)
    cloud per task        = (input_tokens * input_per_million + output_tokens * output_per_million) / 1e6
    KV cache bytes        = 2 * layers * kv_heads * head_dim * context_tokens * concurrency * bytes_per_value
    decode tokens/s       = efficiency * bandwidth bytes/s / weights bytes   (each token reads all weights once)
    prefill tokens/s      = efficiency * FLOP/s / (2 * parameters)           (2 FLOPs per parameter per token)

The efficiencies are the profile's ``decode_efficiency`` and ``prefill_efficiency``: the share of its datasheet
bandwidth and TFLOPS reached, fitted on published measurements (:mod:`poccheck.analysis.calibration`) for the
shipped profiles, 0.6 and 0.5 for a profile that gives none.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

from poccheck.config.costs import (
    DEFAULT_DECODE_EFFICIENCY,
    DEFAULT_PREFILL_EFFICIENCY,
    CloudPrice,
    CostProfiles,
    ServerProfile,
    Workload,
)
from poccheck.errors import PocCheckError, did_you_mean
from poccheck.i18n import Message

HOURS_PER_YEAR = 8760
HOURS_PER_MONTH = 730  # 8760 / 12
DAYS_PER_MONTH = 30.4  # 365 / 12, rounded
GIB = 2**30


@dataclass(frozen=True)
class Estimate:
    """A number with whether it was projected (not measured) and a short text of how it was computed."""

    value: float
    projected: bool
    basis: str


@dataclass(frozen=True)
class DeploymentCost:
    """What one way of running a model costs and whether it can run at all. Money in USD.

    For a cloud API ``servers_needed`` is 0, memory is not ours to fit, and throughput is unbounded by our
    hardware (``math.inf``; the provider's rate limits apply).
    """

    mode: str
    per_1000_tasks: Estimate
    per_month: Estimate
    servers_needed: int
    fits_in_memory: bool
    memory_needed_gib: float
    throughput_tasks_per_hour: Estimate
    notes: tuple[Message, ...] = field(default_factory=tuple)
    capacity_tasks_per_hour: float | None = None  # own servers: what one server serves, after utilisation
    price: CloudPrice | None = None  # cloud APIs: the list price used, with its source and retrieval date
    price_stale: bool = False  # cloud APIs: that price was retrieved more than six months before the analysis


def server_cost_per_hour(p: ServerProfile, electricity_price_per_kwh: float) -> float:
    """Whole-server cost in USD per wall-clock hour, whether busy or idle.

    ``purchase_price / (lifetime_years * 8760) + power_watts / 1000 * electricity_price_per_kwh
    + operations_per_year / 8760``.
    """
    capex = p.purchase_price / (p.lifetime_years * HOURS_PER_YEAR)
    power = p.power_watts / 1000 * electricity_price_per_kwh
    operations = p.operations_per_year / HOURS_PER_YEAR
    return capex + power + operations


def onprem_cost(
    profile: ServerProfile,
    electricity_price_per_kwh: float,
    tasks_per_hour_per_server: Estimate,
    workload: Workload,
) -> tuple[Estimate, Estimate, int]:
    """Cost of own servers sized for the workload: (per 1000 tasks, per month, servers needed).

    Effective capacity per server = tasks_per_hour_per_server * utilisation; peak demand = tasks_per_day /
    hours_per_day (tasks per hour); servers = max(1, ceil(peak demand / effective capacity));
    per month = servers * :func:`server_cost_per_hour` * 730; per 1000 tasks = per month /
    (tasks_per_day * 30.4 / 1000). Both are projected when the throughput was.
    """
    _check_workload(workload)
    if not tasks_per_hour_per_server.value > 0:
        raise ValueError(f"tasks_per_hour_per_server must be above 0, not {tasks_per_hour_per_server.value!r}")
    capacity = tasks_per_hour_per_server.value * profile.utilisation
    demand = workload.tasks_per_day / workload.hours_per_day
    servers = max(1, math.ceil(demand / capacity))
    hourly = server_cost_per_hour(profile, electricity_price_per_kwh)
    monthly = servers * hourly * HOURS_PER_MONTH
    per_1000 = monthly / (workload.tasks_per_day * DAYS_PER_MONTH / 1000)
    projected = tasks_per_hour_per_server.projected
    month_basis = (
        f"{servers} server(s) x {hourly:.3f} USD/h x {HOURS_PER_MONTH} h; sized for {demand:.4g} tasks/h at peak "
        f"against {capacity:.4g} tasks/h per server ({tasks_per_hour_per_server.value:.4g} x "
        f"{profile.utilisation:g} utilisation; throughput {'projected' if projected else 'measured'})"
    )
    per_1000_basis = f"{monthly:.2f} USD/month / ({workload.tasks_per_day:g} tasks/day x {DAYS_PER_MONTH} days) x 1000"
    return Estimate(per_1000, projected, per_1000_basis), Estimate(monthly, projected, month_basis), servers


def cloud_cost(price: CloudPrice, workload: Workload) -> tuple[Estimate, Estimate]:
    """Cost of a cloud API: (per 1000 tasks, per month), from list price x tokens (not projected).

    Per task = (input_tokens * input_per_million + output_tokens * output_per_million) / 1e6;
    per 1000 tasks = 1000 * per task; per month = per task * tasks_per_day * 30.4.
    """
    _check_workload(workload)
    input_cost = workload.input_tokens * price.input_per_million
    per_task = (input_cost + workload.output_tokens * price.output_per_million) / 1e6
    per_1000 = 1000 * per_task
    monthly = per_task * workload.tasks_per_day * DAYS_PER_MONTH
    tokens = (
        f"list price {price.input_per_million:g}/{price.output_per_million:g} USD per million input/output tokens "
        f"({price.date or 'undated'}) x {workload.input_tokens:g} input + {workload.output_tokens:g} output tokens"
    )
    return (
        Estimate(per_1000, False, f"{tokens} per task x 1000"),
        Estimate(monthly, False, f"{tokens} per task x {workload.tasks_per_day:g} tasks/day x {DAYS_PER_MONTH} days"),
    )


def kv_cache_bytes(
    layers: int, kv_heads: int, head_dim: int, context_tokens: int, concurrency: int, bytes_per_value: int = 2
) -> int:
    """Bytes of KV cache: ``2 (K and V) * layers * kv_heads * head_dim * context_tokens * concurrency *
    bytes_per_value`` (2 for bf16/fp16)."""
    return 2 * layers * kv_heads * head_dim * context_tokens * concurrency * bytes_per_value


def fits(weights_bytes: float, kv_bytes: float, memory_gib: float, reserve_fraction: float = 0.1) -> bool:
    """Whether weights and KV cache fit in ``memory_gib`` GiB, keeping ``reserve_fraction`` free for the runtime
    and activations: ``weights_bytes + kv_bytes <= memory_gib * 2**30 * (1 - reserve_fraction)``."""
    return weights_bytes + kv_bytes <= memory_gib * GIB * (1 - reserve_fraction)


def projected_decode_tokens_per_second(
    weights_bytes: float, memory_bandwidth_gbs: float, efficiency: float = DEFAULT_DECODE_EFFICIENCY
) -> float:
    """Generated tokens per second of one stream: ``efficiency * memory_bandwidth_gbs * 1e9 / weights_bytes``.

    Decoding is memory-bound: each new token reads every weight once, so bandwidth sets the pace.
    """
    if weights_bytes <= 0:
        raise ValueError(f"weights_bytes must be above 0, not {weights_bytes!r}")
    return efficiency * memory_bandwidth_gbs * 1e9 / weights_bytes


def projected_prefill_tokens_per_second(
    parameters: float, compute_tflops: float, efficiency: float = DEFAULT_PREFILL_EFFICIENCY
) -> float:
    """Prompt tokens per second: ``efficiency * compute_tflops * 1e12 / (2 * parameters)``.

    Prefill is compute-bound: a forward pass costs about 2 FLOPs per parameter per token.
    """
    if parameters <= 0:
        raise ValueError(f"parameters must be above 0, not {parameters!r}")
    return efficiency * compute_tflops * 1e12 / (2 * parameters)


def projected_seconds_per_task(
    parameters: float, weights_bytes: float, input_tokens: float, output_tokens: float, profile: ServerProfile
) -> float:
    """Seconds for one task on ``profile``, one request at a time:
    ``input_tokens / prefill rate + output_tokens / decode rate``, at the profile's prefill and decode
    efficiencies."""
    prefill = projected_prefill_tokens_per_second(parameters, profile.compute_tflops, profile.prefill_efficiency)
    decode = projected_decode_tokens_per_second(weights_bytes, profile.memory_bandwidth_gbs, profile.decode_efficiency)
    return input_tokens / prefill + output_tokens / decode


def servers_for_latency(p95_seconds: float, slo_seconds: float) -> bool:
    """Whether a (measured or projected) p95 latency meets the SLO; concurrency is handled by the server count."""
    return p95_seconds <= slo_seconds


def convert(amount_usd: float, currency: str, profiles: CostProfiles) -> float:
    """``amount_usd`` in ``currency``, using ``profiles.exchange_rates`` (units per 1 USD)."""
    rate = profiles.exchange_rates.get(currency)
    if rate is None:
        known = tuple(profiles.exchange_rates)
        raise PocCheckError(
            f"no exchange rate for {currency!r}{did_you_mean(currency, known)}",
            f"use one of {', '.join(known)} or add it under cost_profiles.exchange_rates",
        )
    return amount_usd * rate


def _check_workload(workload: Workload) -> None:
    if not workload.tasks_per_day > 0:
        raise ValueError(f"tasks_per_day must be above 0, not {workload.tasks_per_day!r}")
    if not 0 < workload.hours_per_day <= 24:
        raise ValueError(f"hours_per_day must be above 0 and at most 24, not {workload.hours_per_day!r}")


# ---------------------------------------------------------------- whole deployments


def onprem_deployment(
    mode: str,
    profile: ServerProfile,
    electricity_price_per_kwh: float,
    workload: Workload,
    *,
    parameters: float,
    weights_bytes: float,
    kv_bytes: float,
    seconds_per_task: Estimate | None = None,
) -> DeploymentCost:
    """Cost and feasibility of running a model on own servers of ``profile``.

    ``kv_bytes`` is the KV cache for ``workload.peak_concurrency`` streams (see :func:`kv_cache_bytes`).
    ``seconds_per_task`` is a measured (or otherwise known) time per task on this kind of server; without it the
    time is projected with :func:`projected_seconds_per_task`. Throughput assumes one request at a time per
    server (3600 / seconds per task); batching can raise it, so the server count errs on the safe side.
    """
    notes: list[Message] = []
    if seconds_per_task is None:
        seconds = projected_seconds_per_task(
            parameters, weights_bytes, workload.input_tokens, workload.output_tokens, profile
        )
        seconds_per_task = Estimate(
            seconds,
            True,
            f"projected: {workload.input_tokens:g} prompt tokens at {profile.prefill_efficiency:.1%} of "
            f"{profile.compute_tflops:g} TFLOPS + {workload.output_tokens:g} output tokens at "
            f"{profile.decode_efficiency:.1%} of {profile.memory_bandwidth_gbs:g} GB/s",
        )
        notes.append(Message.of("notes.projected"))
    if not seconds_per_task.value > 0:
        raise ValueError(f"seconds_per_task must be above 0, not {seconds_per_task.value!r}")
    throughput = Estimate(
        3600 / seconds_per_task.value,
        seconds_per_task.projected,
        f"3600 s / {seconds_per_task.value:.3g} s per task, one request at a time ({seconds_per_task.basis})",
    )
    per_1000, per_month, servers = onprem_cost(profile, electricity_price_per_kwh, throughput, workload)
    memory_gib = profile.model_memory_gib
    fit = fits(weights_bytes, kv_bytes, memory_gib)
    needed = (weights_bytes + kv_bytes) / GIB
    if not fit:
        notes.append(
            Message.of("notes.gpu_does_not_fit" if profile.is_gpu else "notes.does_not_fit", needed=needed,
                       memory=memory_gib)
        )  # fmt: skip
    if workload.peak_concurrency > servers:
        notes.append(Message.of("notes.queueing", concurrency=workload.peak_concurrency, count=servers))
    return DeploymentCost(
        mode=mode,
        per_1000_tasks=per_1000,
        per_month=per_month,
        servers_needed=servers,
        fits_in_memory=fit,
        memory_needed_gib=needed,
        throughput_tasks_per_hour=throughput,
        notes=tuple(notes),
        capacity_tasks_per_hour=throughput.value * profile.utilisation,
    )


def cloud_deployment(price: CloudPrice, workload: Workload, today: _dt.date | None = None) -> DeploymentCost:
    """Cost of sending the workload to a cloud API (mode ``cloud:<name>``); no servers, no memory limit.

    The notes say when the model is retired, when its price is unconfirmed, and when the price was retrieved more
    than six months before ``today`` (the analysis date; default: the local date now).
    """
    today = today or _dt.date.today()
    per_1000, per_month = cloud_cost(price, workload)
    stale = price.stale(today)
    notes = [Message.of("notes.list_price"), Message.of("notes.data_leaves")]
    if price.retired:
        notes.insert(0, Message.of("notes.model_retired"))
    if not price.confirmed:
        notes.insert(0, Message.of("notes.price_unconfirmed"))
    if stale:
        notes.insert(0, Message.of("notes.price_stale", retrieved=price.retrieved, today=today.isoformat()))
    return DeploymentCost(
        mode=f"cloud:{price.name}",
        per_1000_tasks=per_1000,
        per_month=per_month,
        servers_needed=0,
        fits_in_memory=True,
        memory_needed_gib=0.0,
        throughput_tasks_per_hour=Estimate(math.inf, False, "not limited by own hardware; provider rate limits apply"),
        notes=tuple(notes),
        price=price,
        price_stale=stale,
    )
