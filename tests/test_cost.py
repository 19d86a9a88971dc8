"""Cost model: each formula against a case computed by hand (the arithmetic is written out in comments)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from poccheck.analysis.cost import (
    GIB,
    Estimate,
    cloud_cost,
    cloud_deployment,
    convert,
    fits,
    kv_cache_bytes,
    onprem_cost,
    onprem_deployment,
    projected_decode_tokens_per_second,
    projected_prefill_tokens_per_second,
    projected_seconds_per_task,
    server_cost_per_hour,
    servers_for_latency,
)
from poccheck.config import costs
from poccheck.config.costs import CloudPrice, ServerProfile, Workload, load_profiles, override_problems
from poccheck.errors import PocCheckError


def server(**changes: object) -> ServerProfile:
    values: dict[str, object] = {
        "name": "test",
        "purchase_price": 8760,
        "lifetime_years": 1,
        "power_watts": 1000,
        "utilisation": 0.5,
        "operations_per_year": 876,
        "memory_gib": 64,
        "memory_bandwidth_gbs": 300,
        "compute_tflops": 3.0,
        "date": "2025-01",
        "source": "test",
    }
    values.update(changes)
    return ServerProfile(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- shipped profiles


def test_shipped_profiles_have_the_documented_figures_each_dated_and_sourced() -> None:
    profiles = load_profiles()
    cpu, gpu = profiles.onprem_cpu, profiles.onprem_gpu
    assert (cpu.purchase_price, cpu.lifetime_years, cpu.power_watts, cpu.utilisation) == (12000, 4, 450, 0.6)
    assert (cpu.memory_gib, cpu.memory_bandwidth_gbs, cpu.compute_tflops, cpu.cores) == (256, 921.6, 3.0, 64)
    # datasheet figures with the efficiencies fitted in tests/test_calibration.py (CPU prefill: the default)
    assert (cpu.decode_efficiency, cpu.prefill_efficiency) == (0.145, 0.5)
    assert not cpu.is_gpu and cpu.gpu_memory_gib is None and cpu.model_memory_gib == 256
    assert (gpu.purchase_price, gpu.gpu_memory_gib, gpu.memory_bandwidth_gbs, gpu.gpus) == (25000, 48, 864, 1)
    assert (gpu.compute_tflops, gpu.decode_efficiency, gpu.prefill_efficiency) == (362, 0.607, 0.183)
    assert gpu.is_gpu and gpu.model_memory_gib == 48
    assert profiles.electricity_price_per_kwh == 0.20
    assert profiles.exchange_rates == {"USD": 1.0, "JPY": 150.0}
    mini = profiles.cloud["gpt-4o-mini"]
    assert (mini.input_per_million, mini.output_per_million) == (0.15, 0.60)
    assert {"gpt-4o", "claude-3-5-haiku", "gemini-1.5-flash"} <= set(profiles.cloud)
    for what, date, source in profiles.provenance():
        assert re.fullmatch(r"\d{4}-\d{2}", date), what
        assert source.strip(), what


# ---------------------------------------------------------------- servers


def test_server_cost_per_hour() -> None:
    # capex: $8760 over 1 year of 8760 h = $1.00/h
    # power: 1000 W = 1 kWh per hour, at $0.20/kWh = $0.20/h
    # operations: $876/year / 8760 h = $0.10/h
    # total = $1.30/h
    assert server_cost_per_hour(server(), 0.20) == pytest.approx(1.30)
    # the shipped CPU server: 12000 / (4 * 8760) + 0.45 * 0.20 + 1500 / 8760 = 0.34247 + 0.09 + 0.17123 = 0.60370
    assert server_cost_per_hour(load_profiles().onprem_cpu, 0.20) == pytest.approx(0.603699, abs=1e-6)


def test_onprem_cost_sizes_servers_for_peak_demand() -> None:
    # throughput 100 tasks/h x utilisation 0.5 = 50 tasks/h per server
    # demand: 1000 tasks/day over 10 h = 100 tasks/h -> ceil(100 / 50) = 2 servers
    # per month: 2 servers x $1.30/h x 730 h = $1898.00
    # per 1000 tasks: 1898 / (1000 x 30.4 / 1000) = 1898 / 30.4 = $62.4342
    workload = Workload(tasks_per_day=1000, peak_concurrency=2, input_tokens=300, output_tokens=60, hours_per_day=10)
    per_1000, per_month, servers = onprem_cost(server(), 0.20, Estimate(100, False, "measured"), workload)
    assert servers == 2
    assert per_month.value == pytest.approx(1898.0)
    assert per_1000.value == pytest.approx(62.434210, abs=1e-6)
    assert not per_month.projected and not per_1000.projected
    assert "2 server(s)" in per_month.basis


def test_onprem_cost_needs_at_least_one_server_and_carries_projection() -> None:
    # demand 10 tasks/day over 24 h = 0.42 tasks/h, far below 50 tasks/h -> still 1 server: 1.30 x 730 = $949.00
    workload = Workload(tasks_per_day=10, peak_concurrency=1, input_tokens=1, output_tokens=1)
    per_1000, per_month, servers = onprem_cost(server(), 0.20, Estimate(100, True, "projected"), workload)
    assert servers == 1
    assert per_month.value == pytest.approx(949.0)
    # 949 / (10 x 30.4 / 1000) = 949 / 0.304 = $3121.71 per 1000 tasks: a server idles at low volume
    assert per_1000.value == pytest.approx(3121.710526, abs=1e-6)
    assert per_month.projected and per_1000.projected


def test_onprem_cost_rejects_zero_throughput() -> None:
    workload = Workload(tasks_per_day=10, peak_concurrency=1, input_tokens=1, output_tokens=1)
    with pytest.raises(ValueError, match="tasks_per_hour_per_server"):
        onprem_cost(server(), 0.20, Estimate(0, False, ""), workload)


# ---------------------------------------------------------------- cloud


def test_cloud_cost_from_list_price_and_tokens() -> None:
    # per task: (300 x 0.15 + 60 x 0.60) / 1e6 = (45 + 36) / 1e6 = $0.000081
    # per 1000 tasks: $0.081; per month: 0.000081 x 2000 tasks/day x 30.4 days = $4.9248
    price = CloudPrice("gpt-4o-mini", 0.15, 0.60, "2024-07", "list")
    workload = Workload(tasks_per_day=2000, peak_concurrency=4, input_tokens=300, output_tokens=60)
    per_1000, per_month = cloud_cost(price, workload)
    assert per_1000.value == pytest.approx(0.081)
    assert per_month.value == pytest.approx(4.9248)
    assert not per_1000.projected and not per_month.projected
    assert "list price" in per_1000.basis
    deployment = cloud_deployment(price, workload)
    assert deployment.mode == "cloud:gpt-4o-mini"
    assert deployment.servers_needed == 0 and deployment.fits_in_memory
    assert math.isinf(deployment.throughput_tasks_per_hour.value)


# ---------------------------------------------------------------- memory


def test_kv_cache_bytes_for_a_gemma3_270m_like_config() -> None:
    # 2 (K and V) x 18 layers x 1 kv head x 256 head_dim x 4096 tokens x 4 streams x 2 bytes (bf16)
    # = 36 x 256 = 9216; x 4096 = 37,748,736; x 4 = 150,994,944; x 2 = 301,989,888 bytes = 288 MiB
    assert kv_cache_bytes(18, 1, 256, 4096, 4) == 301_989_888
    assert kv_cache_bytes(18, 1, 256, 4096, 4) == 288 * 2**20
    assert kv_cache_bytes(18, 1, 256, 4096, 4, bytes_per_value=1) == 150_994_944


def test_fits_keeps_a_reserve() -> None:
    # 2 GiB with a 10% reserve leaves 1.8 GiB: 1 GiB weights + 0.8 GiB cache fits, 1 GiB more does not
    kv = int(0.8 * GIB)
    assert fits(GIB, kv, 2)
    assert not fits(GIB + GIB, kv, 2)
    assert fits(GIB + GIB, kv, 2, reserve_fraction=0.0) is False
    assert fits(GIB, GIB, 2, reserve_fraction=0.0)


# ---------------------------------------------------------------- projections


def test_projected_decode_is_memory_bound() -> None:
    # 0.6 x 300e9 bytes/s / 1.5e9 bytes per token = 120 tokens/s
    assert projected_decode_tokens_per_second(1.5e9, 300) == pytest.approx(120.0)
    assert projected_decode_tokens_per_second(1.5e9, 300, efficiency=1.0) == pytest.approx(200.0)


def test_projected_prefill_is_compute_bound() -> None:
    # 0.5 x 3e12 FLOP/s / (2 x 1e9 parameters) = 750 tokens/s
    assert projected_prefill_tokens_per_second(1e9, 3.0) == pytest.approx(750.0)


def test_projected_seconds_per_task() -> None:
    # 300 prompt tokens / 750 tok/s = 0.4 s; 60 output tokens / 120 tok/s = 0.5 s; total 0.9 s
    profile = server(memory_bandwidth_gbs=300, compute_tflops=3.0)
    assert projected_seconds_per_task(1e9, 1.5e9, 300, 60, profile) == pytest.approx(0.9)


def test_onprem_deployment_projects_and_checks_memory() -> None:
    # 0.9 s per task (as above) -> 3600 / 0.9 = 4000 tasks/h, projected
    profile = server()
    workload = Workload(tasks_per_day=1000, peak_concurrency=1, input_tokens=300, output_tokens=60, hours_per_day=10)
    result = onprem_deployment(
        "onprem_cpu",
        profile,
        0.20,
        workload,
        parameters=1e9,
        weights_bytes=1.5e9,
        kv_bytes=kv_cache_bytes(18, 1, 256, 4096, 1),
    )
    assert result.throughput_tasks_per_hour.value == pytest.approx(4000.0)
    assert result.throughput_tasks_per_hour.projected and result.per_month.projected
    assert result.servers_needed == 1 and result.fits_in_memory
    # (1.5e9 + 75,497,472 KV bytes) / 1,073,741,824 = 1,575,497,472 / 1,073,741,824 = 1.467296 GiB
    assert result.memory_needed_gib == pytest.approx(1.467296, abs=1e-6)
    assert any(note.key == "notes.projected" for note in result.notes)

    measured = onprem_deployment(
        "onprem_gpu",
        server(memory_gib=256, gpu_memory_gib=48, gpus=1),
        0.20,
        workload,
        parameters=30e9,
        weights_bytes=60 * GIB,
        kv_bytes=0,
        seconds_per_task=Estimate(2.0, False, "measured p50"),
    )
    assert not measured.fits_in_memory  # 60 GiB of weights in a 48 GiB GPU
    assert measured.throughput_tasks_per_hour.value == pytest.approx(1800.0)
    assert not measured.per_month.projected
    assert any(note.key == "notes.gpu_does_not_fit" for note in measured.notes)


def test_servers_for_latency() -> None:
    assert servers_for_latency(4.9, 5.0)
    assert servers_for_latency(5.0, 5.0)
    assert not servers_for_latency(5.1, 5.0)


# ---------------------------------------------------------------- money


def test_convert_uses_the_exchange_rate() -> None:
    profiles = load_profiles()
    assert convert(100, "USD", profiles) == 100
    assert convert(100, "JPY", profiles) == pytest.approx(15000)  # 100 USD x 150 JPY/USD
    assert convert(100, "JPY", load_profiles({"exchange_rates": {"JPY": 155}})) == pytest.approx(15500)
    with pytest.raises(PocCheckError, match="no exchange rate for 'JYP'.*did you mean 'JPY'"):
        convert(1, "JYP", profiles)


# ---------------------------------------------------------------- overrides


def test_overrides_merge_onto_the_shipped_profiles() -> None:
    profiles = load_profiles(
        {
            "onprem_gpu": {"purchase_price": 31000},
            "onprem_cpu": {"power_watts": 500, "source": "our measurement, 2025-06"},
            "electricity_price_per_kwh": 0.25,
            "cloud_apis": {"in-house-api": {"input_per_million": 1.0, "output_per_million": 2.0}},
        }
    )
    assert profiles.onprem_gpu.purchase_price == 31000
    assert profiles.onprem_gpu.gpu_memory_gib == 48  # untouched keys stay
    assert profiles.onprem_gpu.source.startswith("plan override of purchase_price")
    assert profiles.onprem_cpu.source == "our measurement, 2025-06"
    assert profiles.electricity_price_per_kwh == 0.25
    assert profiles.cloud["in-house-api"].output_per_million == 2.0
    assert "gpt-4o" in profiles.cloud
    assert load_profiles().onprem_gpu.purchase_price == 25000  # the shipped data is not changed


def test_bad_overrides_name_every_bad_key() -> None:
    overrides = {
        "onprem_cpu": {"purchse_price": 1, "utilisation": 1.5},
        "electricity": 0.3,
        "cloud_apis": {"new-model": {"input_per_million": 1.0}},
    }
    with pytest.raises(PocCheckError) as caught:
        load_profiles(overrides)
    message = str(caught.value)
    assert "cost_profiles.onprem_cpu.purchse_price: unknown key (did you mean 'purchase_price'?)" in message
    assert "cost_profiles.electricity: unknown key (did you mean 'electricity_price_per_kwh'?)" in message
    assert "cost_profiles.onprem_cpu.utilisation: must be above 0 and at most 1, not 1.5" in message
    assert "cost_profiles.cloud_apis.new-model.output_per_million: missing" in message
    assert [path for path, _ in override_problems(overrides)] == [
        ("onprem_cpu", "purchse_price"),
        ("electricity",),
        ("onprem_cpu", "utilisation"),
        ("cloud_apis", "new-model", "output_per_million"),
    ]
    assert override_problems({}) == []
    with pytest.raises(PocCheckError, match="must be a mapping"):
        load_profiles({"onprem_gpu": 5})


# ---------------------------------------------------------------- the schema


def _data(name: str) -> str:
    return resources.files("poccheck").joinpath(f"data/{name}").read_text(encoding="utf-8")


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return _resolved(costs.SCHEMA["$defs"][ref.removeprefix("#/$defs/")]) if ref else schema


def test_the_shipped_profiles_fit_the_packaged_schema_under_a_plain_draft_2020_12_validator() -> None:
    schema = json.loads(_data("cost_profiles.schema.json"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == costs.SCHEMA  # the module checks against the packaged file, not a copy of its own
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(yaml.safe_load(_data("cost_profiles.yaml")))) == []
    assert override_problems(None) == [] and override_problems({}) == []
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(schema))
    assert refs and all(ref.removeprefix("#/$defs/") in schema["$defs"] for ref in refs)  # local, and they resolve


def test_the_schema_is_the_one_statement_of_the_fields() -> None:
    shipped = yaml.safe_load(_data("cost_profiles.yaml"))
    sections = costs.SCHEMA["properties"]
    assert costs.SECTIONS == tuple(sections) == tuple(shipped)
    for kind, name in ((ServerProfile, "onprem_cpu"), (ServerProfile, "onprem_gpu"), (CloudPrice, "cloud_apis")):
        schema = (
            _resolved(sections[name]) if kind is ServerProfile else _resolved(sections[name]["additionalProperties"])
        )
        fields = {f.name: f for f in dataclasses.fields(kind) if f.name != "name"}
        assert set(schema["properties"]) == set(fields), name  # the dataclass holds exactly the schema's fields
        without_default = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
        assert set(schema["required"]) == without_default, name
        whole = {n for n, sub in schema["properties"].items() if _resolved(sub).get("type") == "integer"}
        assert whole == {n for n, f in fields.items() if "int" in str(f.type).split(" | ")}, name
    for name in costs.SERVER_SECTIONS:
        assert sections[name] == {"$ref": "#/$defs/server"}
        assert set(_resolved(sections[name])["required"]) <= set(shipped[name]), name
    assert set(sections["electricity_price_per_kwh"]["required"]) <= set(shipped["electricity_price_per_kwh"])
    for model, entry in shipped["cloud_apis"].items():
        assert set(costs.SCHEMA["$defs"]["cloud_price"]["required"]) <= set(entry), model


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("onprem_cpu.purchase_price", "abc", "must be a number of at least 0, not 'abc'"),
        ("onprem_cpu.purchase_price", True, "must be a number of at least 0, not True"),  # a bool is no number
        ("onprem_cpu.purchase_price", -1, "must be at least 0, not -1"),
        ("onprem_cpu.power_watts", float("inf"), "must be a number of at least 0, not inf"),
        ("onprem_cpu.lifetime_years", 0, "must be above 0, not 0"),
        ("onprem_cpu.utilisation", "high", "must be a number above 0 and at most 1, not 'high'"),
        ("onprem_gpu.gpus", 2.0, "must be a whole number above 0, not 2.0"),
        ("onprem_gpu.gpus", 0, "must be above 0, not 0"),
        ("onprem_gpu.date", "2024-13", "must be a year and month such as \"2025-01\", not '2024-13'"),
        ("onprem_gpu.source", "  ", "must be a non-empty text, not '  '"),
        ("electricity_price_per_kwh", -0.1, None),
        ("electricity_price_per_kwh.source", 5, "must be a non-empty text, not 5"),
        ("onprem_gpu", 5, "must be a mapping, not 5"),
        ("cloud_apis.gpt-4o", "cheap", "must be a mapping of input_per_million, output_per_million, not 'cheap'"),
        ("cloud_apis.gpt-4o.output_per_million", False, "must be a number of at least 0, not False"),
        ("exchange_rates.JPY", "abc", "must be a number above 0, not 'abc'"),
        ("exchange_rates.JPY", 0, "must be above 0, not 0"),
        ("exchange_rates.USD", 2, "must be 1.0 (rates are units of currency per 1 USD), not 2"),
        ("exchange_rates.USD", -1, "must be above 0, not -1"),  # one problem per key
        ("exchange_rates.date", "2025-06-01", "must be a year and month such as \"2025-01\", not '2025-06-01'"),
        ("exchange_rates.jpy", 150, "unknown key: use a currency code such as JPY, or date/source"),
        ("onprem_gpu.lifetme_years", 5, "unknown key (did you mean 'lifetime_years'?)"),
        ("cloud_apis.gpt-4o.confirmd", True, "unknown key (did you mean 'confirmed'?)"),
        ("cost_apis", {}, "unknown key (did you mean 'cloud_apis'?)"),
    ],
)
def test_a_value_that_does_not_fit_the_schema_is_named_by_its_key(path: str, value: Any, message: str | None) -> None:
    *sections, key = path.split(".")
    overrides: dict[str, Any] = {key: value}
    for section in reversed(sections):
        overrides = {section: overrides}
    where = tuple(path.split("."))
    if message is None:  # the price alone stands for its value
        where, message = (*where, "value"), "must be at least 0, not -0.1"
    assert override_problems(overrides) == [(where, message)]
    with pytest.raises(PocCheckError) as caught:
        load_profiles(overrides)
    assert f"cost_profiles.{'.'.join(where)}: {message}" in str(caught.value)


def test_a_field_left_empty_is_not_given() -> None:
    gpu = load_profiles({"onprem_gpu": {"decode_efficiency": None, "memory_bandwidth_gbs": 1000}}).onprem_gpu
    assert (gpu.decode_efficiency, gpu.memory_bandwidth_gbs) == (0.6, 1000.0)  # the default, not the shipped 0.607
    assert override_problems({"onprem_cpu": {"purchase_price": None}}) == [
        (("onprem_cpu", "purchase_price"), "missing")
    ]


def test_the_profiles_hold_floats_and_whole_counts() -> None:
    profiles = load_profiles({"onprem_gpu": {"purchase_price": 31000, "gpus": 2}, "exchange_rates": {"JPY": 150}})
    assert type(profiles.onprem_gpu.purchase_price) is float and type(profiles.onprem_gpu.gpus) is int
    assert type(profiles.exchange_rates["JPY"]) is float and profiles.exchange_rates["USD"] == 1.0


def test_problems_come_unknown_keys_first_then_sorted_by_section_and_key_path() -> None:
    overrides = {
        "cloud_apis": {"zz-api": {"input_per_million": "x"}, "aa-api": {"output_per_million": -1}},
        "exchange_rates": {"EUR": 0},
        "onprem_cpu": {"gpus": 0, "purchse_price": 1},
        "electricity": 0.3,
    }
    expected = [
        ("onprem_cpu", "purchse_price"),
        ("electricity",),
        ("onprem_cpu", "gpus"),
        ("cloud_apis", "aa-api", "input_per_million"),
        ("cloud_apis", "aa-api", "output_per_million"),
        ("cloud_apis", "zz-api", "input_per_million"),
        ("cloud_apis", "zz-api", "output_per_million"),
        ("exchange_rates", "EUR"),
    ]
    assert [path for path, _ in override_problems(overrides)] == expected  # not in the order the plan gave them
