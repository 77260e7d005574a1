"""coffee_nb: call language models from notebooks without fear.

>>> from coffee_nb import AutoPicker
>>> llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest"])
"""

from __future__ import annotations

from coffee_nb.budget import Budget, BudgetEvent, BudgetWarning, Limit, create_budget_enforcer
from coffee_nb._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CoffeeError,
    ConfigError,
    DeadlineExceededError,
    ErrorClass,
    MissingAPIKeyError,
)
from coffee_nb._http import close as close_http_clients
from coffee_nb._http import configure_http, get_async_http_client, get_http_client
from coffee_nb._invoker import AutoPicker
from coffee_nb.metrics import LocalMetrics, NoOpMetrics, create_metrics_strategy
from coffee_nb._models import ModelSpec, register_provider
from coffee_nb._policy import Action, Policy, RateLimit, Rule, Trip
from coffee_nb._pricing import Price, price_for, register_price, reset_prices
from coffee_nb._records import CallRecord, Outcome, RecordSink, Role, capture_records
from coffee_nb._tokens import TokenCount, count_message_tokens, count_tokens

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "PrometheusMetrics":  # prometheus_client loads only when asked for
        from coffee_nb.metrics._prometheus import PrometheusMetrics

        return PrometheusMetrics
    raise AttributeError(f"module 'coffee_nb' has no attribute {name!r}")

__all__ = [
    "Action",
    "AllModelsFailedError",
    "AutoPicker",
    "Budget",
    "BudgetEvent",
    "BudgetExceededError",
    "BudgetWarning",
    "CallRecord",
    "CoffeeError",
    "ConfigError",
    "DeadlineExceededError",
    "ErrorClass",
    "Limit",
    "LocalMetrics",
    "MissingAPIKeyError",
    "ModelSpec",
    "NoOpMetrics",
    "Outcome",
    "Policy",
    "Price",
    "PrometheusMetrics",
    "RateLimit",
    "RecordSink",
    "Role",
    "Rule",
    "TokenCount",
    "Trip",
    "__version__",
    "capture_records",
    "close_http_clients",
    "configure_http",
    "count_message_tokens",
    "create_budget_enforcer",
    "create_metrics_strategy",
    "count_tokens",
    "get_async_http_client",
    "get_http_client",
    "price_for",
    "register_price",
    "register_provider",
    "reset_prices",
]
