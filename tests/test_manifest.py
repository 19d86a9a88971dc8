"""The run manifest stored with results is the run's whole RunConfig, read back as it was (config.manifest)."""

from __future__ import annotations

import json
from pathlib import Path

from poccheck.config.manifest import manifest_from_record, manifest_record, run_manifest
from poccheck.config.plan import load_plan, parse_plan
from poccheck.config.run import DEFAULT_LATENCY_SAMPLE, Flags, run_config
from poccheck.endpoints import parse_option
from poccheck.records import Suite
from poccheck.runner import Schedule

from .conftest import EXAMPLES

SERVED = f"""\
tasks: ["{EXAMPLES / "factory_suite.yaml"}"]
candidates: [gemma3-270m-q4, vllm@openai, cloud@openai]
modes: [fewshot, cot]
targets: {{accuracy: {{default: 0.7, rules: 0.9}}, p95_latency_seconds: 4}}
workload: {{tasks_per_day: 100, peak_concurrency: 2, input_tokens: 300, output_tokens: 40}}
currency: USD
exchange_rate: 151.5
language: en
cost_profiles:
  electricity_price_per_kwh: {{value: 0.2, date: "2025-06", source: "our bill"}}
endpoints:
  vllm:
    base_url: http://gpu-1:8000/v1
    model: Qwen/Qwen2.5-7B-Instruct
    concurrency: 16
    parameters: 7600000000
    extra_body: {{repeat_penalty: 1.0}}
  cloud:
    base_url: https://api.openai.com/v1
    model: gpt-4o-mini
    api: chat
    api_key_env: OPENAI_API_KEY
    price: gpt-4o-mini
"""
SUITES = (Suite("factory", "factory_suite.yaml", ()), Suite("csv", "tasks.csv", (), prompt_format="raw"))
HOST = {"cpu": "test CPU", "cores": 2}
ENGINE = {"llama_cpp": "0.3"}


def test_a_run_config_with_plan_endpoints_and_flags_is_read_back_equal() -> None:
    plan, problems = parse_plan(SERVED, EXAMPLES.parent / "poccheck.yaml")
    assert problems == [] and plan is not None
    flags = Flags(
        endpoints=[parse_option("local=http://127.0.0.1:8080/v1#tiny")], limit=5, target=0.75, parallel=2,
        prompt_format="chat", redact=True, encoding="cp932", device="cpu", repacked_decode=True,
    )  # fmt: skip
    manifest = run_manifest(run_config(plan, flags), SUITES, HOST, ENGINE)
    stored = json.loads(json.dumps(manifest_record(manifest)))  # as the store keeps it: JSON text
    assert manifest_from_record(stored) == manifest and manifest.config.options.repacked_decode
    del stored["config"]["options"]["repacked_decode"]  # a record from before the option: off
    earlier = manifest_from_record(stored)
    assert earlier is not None and earlier.config.options.repacked_decode is False
    assert stored["config"]["plan"]["endpoints"][1]["api_key_env"] == "OPENAI_API_KEY"  # the variable's name only
    assert manifest.config.options.endpoints[-1].spec == "local@openai" and manifest.config.plan == plan


def test_the_manifest_has_each_model_once_and_schedules_each_in_its_own_modes() -> None:
    plan = load_plan(EXAMPLES / "ladder.yaml")
    config = run_config(plan, Flags(models=["gemma3-270m-q4", "gemma3-270m-q4", "smollm2-135m-q4"]))
    assert config.models.count("gemma3-270m-q4") == 2
    own = run_config(plan, Flags())
    manifest = run_manifest(own, SUITES, HOST, ENGINE)
    assert len(manifest.config.models) == len(set(manifest.config.models)) == len(plan.candidates)
    schedule = manifest.schedule()
    assert schedule.modes == ("fewshot", "cot")
    assert schedule.modes_of("smollm2-135m-q4@transformers") == ("fewshot",)
    assert schedule.modes_of("qwen2.5-coder-1.5b-q4") == ("fewshot", "cot")
    once = run_manifest(config, SUITES, HOST, ENGINE)
    assert once.config.models == ("gemma3-270m-q4", "smollm2-135m-q4")
    assert once.schedule().models == once.config.models and set(once.config.model_modes) == set(once.config.models)
    alone = run_manifest(run_config(None, Flags(models=["m", "m"], modes=["cot"], limit=4)), SUITES, HOST, ENGINE)
    assert alone.schedule() == Schedule(("m",), ("cot",), {}, 4, DEFAULT_LATENCY_SAMPLE)
    none = run_manifest(run_config(None, Flags(models=["m"], latency_sample=0)), SUITES, HOST, ENGINE)
    assert manifest_from_record(json.loads(json.dumps(manifest_record(none)))) == none
    assert none.schedule().latency_sample == 0
    assert manifest.prompt_formats == {"factory": "auto", "csv": "raw"}


def test_a_manifest_of_an_earlier_version_is_read_with_its_models_modes_target_and_plan() -> None:
    plan = load_plan(EXAMPLES / "plan.yaml")
    legacy = {
        "models": ["a", "b"], "modes": ["fewshot", "cot"], "model_modes": {"a": ["fewshot"]}, "target": 0.9,
        "assessment_plan": {
            "path": str(plan.path),
            "targets": {"accuracy": {"default": 0.8}, "p95_latency_seconds": 3.0, "use_lower_bound": True},
            "workload": {"tasks_per_day": 50, "peak_concurrency": 1, "hours_per_day": 8, "input_tokens": None,
                         "output_tokens": None},
            "currency": "JPY", "exchange_rate": None, "language": "ja", "cost_profiles": {},
        },
        "suites": ["factory"], "prompt_formats": {"factory": "auto"}, "task_files": ["examples/factory_suite.yaml"],
        "limit": 3, "host": HOST, "engine": ENGINE,
    }  # fmt: skip
    manifest = manifest_from_record(legacy)
    assert manifest is not None and manifest.config.plan is not None
    assert manifest.config.models == ("a", "b") and manifest.config.target == 0.9 and manifest.config.limit == 3
    assert manifest.modes_of("a") == ("fewshot",) and manifest.modes_of("b") == ("fewshot", "cot")
    assert manifest.config.plan.workload.hours_per_day == 8 and manifest.config.plan.language == "ja"
    assert manifest.config.plan.candidates == () and manifest.config.tasks == (Path("examples/factory_suite.yaml"),)
    assert (manifest.suites, dict(manifest.host)) == (("factory",), HOST)
    assert manifest_from_record({}) is None  # a folder with no run yet
