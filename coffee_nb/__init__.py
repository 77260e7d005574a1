"""coffee_nb: call language models from notebooks without fear.

>>> from coffee_nb import AutoPicker
>>> llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "sandbox/fast"])

In a notebook: ``%load_ext coffee_nb``, then ``%%llm`` cells. Names load on first use, so importing
coffee_nb (and ``%load_ext``) costs milliseconds; LangChain, pandas and provider SDKs come later.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The package root composes the layers: the providers every process knows, registered on first use of
# the provider registry (which lives at the bottom, in _shared/_config, and names no module itself): the
# built-in ones, then the sandbox's. Read from here by the registry; importing coffee_nb imports nothing.
_PROVIDER_LOADERS = ("coffee_nb.providers:register_builtin", "coffee_nb.sandbox._provider:register")

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AllModelsFailedError": "coffee_nb.errors._errors",
    "BudgetExceededError": "coffee_nb.errors._errors",
    "CoffeeError": "coffee_nb.errors._errors",
    "ConfigError": "coffee_nb.errors._errors",
    "DeadlineExceededError": "coffee_nb.errors._errors",
    "ErrorClass": "coffee_nb.errors._errors",
    "MissingAPIKeyError": "coffee_nb.errors._errors",
    "StorageError": "coffee_nb._shared._paths",
    "AutoPicker": "coffee_nb.invoke._invoker",
    "AutoPickerLLM": "coffee_nb.invoke._invoker",
    "AutoPickerLLMRefactored": "coffee_nb.invoke._invoker",
    "CallSummary": "coffee_nb.invoke._summary",
    "CacheWarning": "coffee_nb.replay._cache",
    "Cassette": "coffee_nb.replay._cassette",
    "CassetteError": "coffee_nb.replay._cassette",
    "CassetteMissError": "coffee_nb.replay._cassette",
    "cassette": "coffee_nb.replay._cassette",
    "Comparison": "coffee_nb.comparison._comparison",
    "acompare": "coffee_nb.comparison._compare",
    "compare": "coffee_nb.comparison._compare",
    "Health": "coffee_nb.invoke._health",
    "ModelHealth": "coffee_nb.invoke._health",
    "health": "coffee_nb.session._session",
    "StreamInterruptedError": "coffee_nb.errors._errors",
    "acollect": "coffee_nb.invoke._streams",
    "collect": "coffee_nb.invoke._streams",
    "handles_restarts": "coffee_nb.invoke._streams",
    "is_restart": "coffee_nb.invoke._streams",
    "ModelSpec": "coffee_nb.invoke._models",
    "aliases": "coffee_nb.providers._aliases",
    "remove_alias": "coffee_nb.providers._aliases",
    "set_alias": "coffee_nb.providers._aliases",
    "register_provider": "coffee_nb.invoke._models",
    "Action": "coffee_nb.invoke._policy",
    "Policy": "coffee_nb.invoke._policy",
    "RateLimit": "coffee_nb.invoke._policy",
    "Rule": "coffee_nb.invoke._policy",
    "Trip": "coffee_nb.invoke._policy",
    "Price": "coffee_nb.pricing._pricing",
    "price_for": "coffee_nb.pricing._pricing",
    "register_price": "coffee_nb.pricing._pricing",
    "reset_prices": "coffee_nb.pricing._pricing",
    "CallRecord": "coffee_nb._shared._records",
    "Outcome": "coffee_nb._shared._records",
    "RecordSink": "coffee_nb._shared._records",
    "Role": "coffee_nb._shared._records",
    "capture_records": "coffee_nb._shared._records",
    "TokenCount": "coffee_nb.pricing._tokens",
    "count_message_tokens": "coffee_nb.pricing._tokens",
    "count_tokens": "coffee_nb.pricing._tokens",
    "configure_http": "coffee_nb._shared._http",
    "get_async_http_client": "coffee_nb._shared._http",
    "get_http_client": "coffee_nb._shared._http",
    "close_http_clients": "coffee_nb._shared._http",
    "Budget": "coffee_nb.budget",
    "BudgetEvent": "coffee_nb.budget",
    "BudgetWarning": "coffee_nb.budget",
    "Limit": "coffee_nb.budget",
    "create_budget_enforcer": "coffee_nb.budget",
    "LocalMetrics": "coffee_nb.metrics",
    "NoOpMetrics": "coffee_nb.metrics",
    "OpenTelemetryMetrics": "coffee_nb.metrics",
    "PrometheusMetrics": "coffee_nb.metrics",
    "create_metrics_strategy": "coffee_nb.metrics",
    "Answer": "coffee_nb.session._session",
    "Session": "coffee_nb.session._session",
    "ask": "coffee_nb.session._session",
    "configure": "coffee_nb.session._session",
    "get_session": "coffee_nb.session._session",
    "reset": "coffee_nb.session._session",
    "prompt": "coffee_nb.session._interpolate",
    "content_blocks": "coffee_nb.content._objects",
    "dashboard": "coffee_nb.notebook",
    "map_rows": "coffee_nb.jobs",
    "HealthPanel": "coffee_nb.notebook.health_panel",
}
_ATTR_ALIASES = {"close_http_clients": "close"}

__all__ = [  # every public name, for readers and linters; the package test checks it against _EXPORTS
    "Action",
    "AllModelsFailedError",
    "Answer",
    "AutoPicker",
    "AutoPickerLLM",
    "AutoPickerLLMRefactored",
    "Budget",
    "BudgetEvent",
    "BudgetExceededError",
    "BudgetWarning",
    "CacheWarning",
    "CallRecord",
    "CallSummary",
    "Cassette",
    "CassetteError",
    "CassetteMissError",
    "CoffeeError",
    "Comparison",
    "ConfigError",
    "DeadlineExceededError",
    "ErrorClass",
    "Health",
    "HealthPanel",
    "Limit",
    "LocalMetrics",
    "MissingAPIKeyError",
    "ModelHealth",
    "ModelSpec",
    "NoOpMetrics",
    "OpenTelemetryMetrics",
    "Outcome",
    "Policy",
    "Price",
    "PrometheusMetrics",
    "RateLimit",
    "RecordSink",
    "Role",
    "Rule",
    "Session",
    "StorageError",
    "StreamInterruptedError",
    "TokenCount",
    "Trip",
    "__version__",
    "acollect",
    "acompare",
    "aliases",
    "ask",
    "capture_records",
    "cassette",
    "close_http_clients",
    "collect",
    "compare",
    "configure",
    "configure_http",
    "content_blocks",
    "count_message_tokens",
    "count_tokens",
    "create_budget_enforcer",
    "create_metrics_strategy",
    "dashboard",
    "get_async_http_client",
    "get_http_client",
    "get_session",
    "handles_restarts",
    "health",
    "is_restart",
    "load_ipython_extension",
    "map_rows",
    "price_for",
    "prompt",
    "register_price",
    "register_provider",
    "remove_alias",
    "reset",
    "reset_prices",
    "sandbox",
    "set_alias",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        if name == "sandbox":
            return importlib.import_module("coffee_nb.sandbox")
        raise AttributeError(f"module 'coffee_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), _ATTR_ALIASES.get(name, name))
    globals()[name] = value  # next lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext coffee_nb``: register the ``%%llm`` magics (heavy libraries load on first use)."""
    from coffee_nb.notebook import load_ipython_extension as load  # lazy: import coffee_nb

    load(ipython)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily above
    from coffee_nb import sandbox
    from coffee_nb._shared._http import close as close_http_clients
    from coffee_nb._shared._http import configure_http, get_async_http_client, get_http_client
    from coffee_nb._shared._paths import StorageError
    from coffee_nb._shared._records import CallRecord, Outcome, RecordSink, Role, capture_records
    from coffee_nb.budget import Budget, BudgetEvent, BudgetWarning, Limit, create_budget_enforcer
    from coffee_nb.comparison._compare import acompare, compare
    from coffee_nb.comparison._comparison import Comparison
    from coffee_nb.content._objects import content_blocks
    from coffee_nb.errors._errors import (
        AllModelsFailedError,
        BudgetExceededError,
        CoffeeError,
        ConfigError,
        DeadlineExceededError,
        ErrorClass,
        MissingAPIKeyError,
        StreamInterruptedError,
    )
    from coffee_nb.invoke._health import Health, ModelHealth
    from coffee_nb.invoke._invoker import AutoPicker, AutoPickerLLM, AutoPickerLLMRefactored
    from coffee_nb.invoke._models import ModelSpec, register_provider
    from coffee_nb.invoke._policy import Action, Policy, RateLimit, Rule, Trip
    from coffee_nb.invoke._streams import acollect, collect, handles_restarts, is_restart
    from coffee_nb.invoke._summary import CallSummary
    from coffee_nb.jobs import map_rows
    from coffee_nb.metrics import (
        LocalMetrics,
        NoOpMetrics,
        OpenTelemetryMetrics,
        PrometheusMetrics,
        create_metrics_strategy,
    )
    from coffee_nb.notebook import dashboard
    from coffee_nb.notebook.health_panel import HealthPanel
    from coffee_nb.pricing._pricing import Price, price_for, register_price, reset_prices
    from coffee_nb.pricing._tokens import TokenCount, count_message_tokens, count_tokens
    from coffee_nb.providers._aliases import aliases, remove_alias, set_alias
    from coffee_nb.replay._cache import CacheWarning
    from coffee_nb.replay._cassette import Cassette, CassetteError, CassetteMissError, cassette
    from coffee_nb.session._interpolate import prompt
    from coffee_nb.session._session import Answer, Session, ask, configure, get_session, health, reset
