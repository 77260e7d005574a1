"""The seed design's usage example runs as written there (only the import lines changed)."""

from __future__ import annotations

from decimal import Decimal

from coffee_nb import (
    AutoPicker,
    AutoPickerLLM,
    AutoPickerLLMRefactored,
    Budget,
    LocalMetrics,
    ModelSpec,
    create_budget_enforcer,
    get_http_client,
)
from coffee_nb.testing import ScriptedChatModel, http_error


def test_seed_usage_example_verbatim(capsys):
    primary = ScriptedChatModel(model_name="gpt-4o", script=[http_error(503)])
    fallbacks = [
        (ScriptedChatModel(model_name="haiku", script=["from the fallback"]), "anthropic/claude-3-5-haiku-latest")
    ]

    # --- the seed's example, verbatim ---
    metrics = LocalMetrics()
    budget = create_budget_enforcer(daily_budget=10.0)
    http = get_http_client()
    llm = AutoPickerLLMRefactored(
        primary_llm=primary, primary_model_name="openai/gpt-4o", fallback_llms=fallbacks, metrics_strategy=metrics
    )
    print(metrics.get_metrics())
    print(budget.get_budget_status())
    # --- end ---

    assert http is get_http_client()
    assert llm.model_names == ["openai/gpt-4o", "anthropic/claude-3-5-haiku-latest"]
    answer = llm.invoke("hello")
    assert answer.content == "from the fallback"
    assert answer.response_metadata["coffee_nb"]["fallback_reason"] == "server"
    assert metrics.get_metrics()["requests"]["total"] >= 1
    out = capsys.readouterr().out
    assert "daily" in out


def test_seed_budget_enforcer_is_wired():
    from coffee_nb import register_price

    register_price("openai/gpt-4o", input=2.5, output=10)  # the label prices the scripted stand-in
    budget = Budget(daily=Decimal("0.000001"), ledger="memory")
    model = ScriptedChatModel(model_name="gpt-4o", script=["x" * 10])
    llm = AutoPickerLLM(primary_llm=model, primary_model_name="openai/gpt-4o", budget_enforcer=budget)
    assert llm.budget is budget
    import pytest

    from coffee_nb import BudgetExceededError

    with pytest.raises(BudgetExceededError):
        llm.invoke("hello " * 1000)  # gpt-4o's worst case is far over a micro-dollar


def test_seed_names_are_aliases_and_conflicts_are_errors():
    import pytest

    from coffee_nb import ConfigError

    assert AutoPickerLLM is AutoPicker and AutoPickerLLMRefactored is AutoPicker
    model = ScriptedChatModel()
    with pytest.raises(ConfigError, match="once"):
        AutoPicker(primary_llm=model, primary=model)
    with pytest.raises(ConfigError, match="pair"):
        AutoPicker(primary_llm=model, fallback_llms=[(model, "a", "b")])
    with pytest.raises(ConfigError, match="primary_llm"):
        AutoPicker(model, primary_model_name="x/y")
    picker = AutoPicker(primary_llm=model, fallback_llms=[ModelSpec(model=ScriptedChatModel(model_name="b"))])
    assert len(picker.model_names) == 2
