"""How the plan, the command-line flags and the defaults make one run (``config.run.run_config``, pure)."""

from __future__ import annotations

from pathlib import Path

from poccheck.config.plan import load_plan
from poccheck.config.run import DEFAULT_TARGET, Flags, RunConfig, run_config
from poccheck.endpoints import parse_option
from poccheck.models import DEFAULT_MODEL

from .conftest import EXAMPLES

LADDER = EXAMPLES / "ladder.yaml"
DEFAULTS = (Path("suite.yaml"), Path("tasks.csv"))


def test_without_a_plan_or_flags_the_defaults_run() -> None:
    config = run_config(None, Flags(), DEFAULTS)
    assert config == RunConfig(DEFAULTS, (DEFAULT_MODEL,), Path("poc"), ("fewshot",), {}, target=DEFAULT_TARGET)


def test_the_plan_gives_tasks_candidates_their_own_modes_and_the_folder() -> None:
    plan = load_plan(LADDER)
    config = run_config(plan, Flags(), DEFAULTS)
    assert config.tasks == plan.tasks and config.models == plan.candidates and config.out == plan.out
    assert config.modes == ("fewshot", "cot") and config.plan is plan
    assert config.model_modes["smollm2-135m-q4@transformers"] == ("fewshot",)
    assert config.model_modes["qwen2.5-coder-1.5b-q4"] == ("fewshot", "cot")


def test_flags_win_over_the_plan() -> None:
    plan = load_plan(LADDER)
    flags = Flags(
        tasks=[Path("mine.csv")], models=["gemma3-270m-q4"], modes=["cot"], out=Path("elsewhere"), target=0.6,
        limit=3, language="en", prompt_format="raw", parallel=2,
    )  # fmt: skip
    config = run_config(plan, flags, DEFAULTS)
    assert (config.tasks, config.models, config.modes, config.out) == (
        (Path("mine.csv"),), ("gemma3-270m-q4",), ("cot",), Path("elsewhere"),
    )  # fmt: skip
    assert config.model_modes == {}  # --mode runs every model in the modes given, a candidate's own included
    assert (config.target, config.limit, config.language, config.prompt_format) == (0.6, 3, "en", "raw")
    assert config.options.parallel == 2


def test_a_served_model_from_the_command_line_is_added_and_replaces_the_default_model() -> None:
    served = parse_option("vllm=http://gpu:8000/v1#Qwen/Qwen2.5-7B-Instruct", "MY_KEY", 8)
    alone = run_config(None, Flags(endpoints=[served]), DEFAULTS)
    assert alone.models == ("vllm@openai",) and alone.options.endpoints == (served,)
    plan = load_plan(LADDER)
    with_plan = run_config(plan, Flags(endpoints=[served]), DEFAULTS)
    assert with_plan.models == (*plan.candidates, "vllm@openai")
    assert with_plan.options.endpoints == (*plan.endpoints, served)
    assert with_plan.model_modes["vllm@openai"] == plan.modes  # a model the plan does not list runs in its modes
