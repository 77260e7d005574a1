"""Named checks for configuration values: each returns the value in its canonical type or raises a
``ConfigError`` that names the parameter, repeats the bad value and says what is accepted.

One place for these rules so every option behaves alike: bools are never numbers (``True`` is an
``int`` to Python, never a sensible ``max_tokens``), NaN and infinities are refused, money is a finite
``Decimal``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from coffee_nb._shared._exceptions import ConfigError

__all__ = [
    "MAX_TOKENS",
    "MAX_USD",
    "api_key",
    "flag",
    "fraction",
    "http_url",
    "max_tokens",
    "non_negative_number",
    "optional_flag",
    "optional_positive_int",
    "positive_int",
    "positive_number",
    "price_rate",
    "spec_name",
    "temperature",
    "text",
    "timeout_seconds",
    "usd",
]

# No budget or price is anywhere near a quadrillion dollars: a value this large is a typo (or
# Decimal('1e999')), and refusing it keeps picodollar integers and their SQLite columns sane.
MAX_USD = Decimal("1e15")
# No model writes a billion tokens in one answer; a larger cap is a typo (10**20), and its worst-case
# cost would overflow the integer columns a reservation is held in.
MAX_TOKENS = 1_000_000_000


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """An ``int`` > 0 (not a bool, not a float)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def optional_positive_int(name: str, value: Any) -> int | None:
    """None, or an ``int`` > 0."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def non_negative_number(name: str, value: Any, *, allow_zero: bool = True, integer: bool = False) -> float:
    """A finite number >= 0 (> 0 when ``allow_zero`` is False); an ``int`` when ``integer``."""
    kind = "an integer" if integer else "a finite number"
    bound = ">= 0" if allow_zero else "> 0"
    if not _is_number(value) or math.isnan(value) or math.isinf(value) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{name} must be {kind} {bound}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {kind} {bound}, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0."""
    return non_negative_number(name, value, allow_zero=False)


def fraction(name: str, value: Any) -> float:
    """A number within (0, 1], e.g. 0.8 for 80%."""
    if not _is_number(value) or math.isnan(value) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be a fraction within (0, 1], e.g. 0.8 for 80%; got {value!r}")
    return float(value)


def usd(name: str, value: Any, *, unit: str = "USD") -> Decimal:
    """An amount of money as a finite ``Decimal`` within [0, 1e15): numbers and numeric strings accepted."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an amount in {unit}, got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ConfigError(f"{name} must be an amount in {unit}, got {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ConfigError(f"{name} must be a finite amount >= 0 ({unit}), got {value!r}")
    if d >= MAX_USD:
        raise ConfigError(f"{name} must be below {MAX_USD:,.0f} ({unit}), got {value!r}")
    return d


def temperature(value: Any, name: str = "temperature") -> float:
    """A sampling temperature: a finite number within [0, 2]."""
    if not _is_number(value) or math.isnan(value) or not 0 <= value <= 2:
        raise ConfigError(f"{name} must be a number within [0, 2], got {value!r}")
    return float(value)


def max_tokens(value: Any, name: str = "max_tokens") -> int:
    """An output-token cap: an ``int`` within [1, 1e9]."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_TOKENS:
        raise ConfigError(f"{name} must be a positive integer up to {MAX_TOKENS:,}, got {value!r}")
    return value


def flag(name: str, value: Any, meaning: str = "") -> bool:
    """``True`` or ``False`` exactly: ``'no'`` is truthy and ``1`` is a number, so neither is accepted."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False{meaning}, got {value!r}")
    return value


def optional_flag(name: str, value: Any, meaning: str = "") -> bool | None:
    """None, ``True`` or ``False``."""
    return None if value is None else flag(name, value, meaning)


def text(name: str, value: Any, *, empty: bool = True) -> str:
    """A ``str`` (non-blank unless ``empty``)."""
    if not isinstance(value, str) or (not empty and not value.strip()):
        kind = "a string" if empty else "a non-empty string"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    return value


def price_rate(name: str, value: Any) -> Decimal:
    """A price in USD per 1M tokens. Required: a missing price must read as unpriced, never as $0."""
    if value is None:
        raise ConfigError(
            f"price {name} is required (USD per 1M tokens, 0 for free), got None; "
            "a model you can't price is better left unregistered: it shows as unpriced"
        )
    return usd(f"price {name}", value, unit="USD per 1M tokens")


def spec_name(name: str, value: Any) -> str:
    """A ``"provider/model"`` name as written (no spaces anywhere, both parts present): what prices and
    records are keyed by, so ``"gpt-4o"`` or ``"openai/x "`` would silently never match."""
    provider, slash, model = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not slash or not provider or not model or any(c.isspace() for c in value):
        raise ConfigError(
            f"{name} must be a model spec like 'openai/my-finetune' (provider/model, no spaces), got {value!r}"
        )
    return str(value)


def http_url(name: str, value: Any) -> str:
    """A server's address: an ``http://`` or ``https://`` URL with a host (a password in it is not repeated)."""
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc.rpartition("@")[2]:
            return value
        shown = repr(re.sub(r"(^|//)[^/@]*@", r"\1***@", value))  # user:password@ stays out of the message
    else:
        shown = repr(value)
    raise ConfigError(
        f"{name} must be an http(s) URL with a host, like 'http://127.0.0.1:8000/v1' or 'https://api.example.com/v1'; "
        f"got {shown}"
    )


def timeout_seconds(name: str, value: Any) -> Any:
    """A client's timeout: seconds > 0, None (the client's default), a tuple of those (connect, read, ...),
    or the client's own timeout object (``httpx.Timeout``), which is passed on as it is."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not parts or any(_bad_seconds(part) for part in parts):
        raise ConfigError(
            f"{name} must be seconds > 0 (a number, e.g. 30), None for the client's default, or an "
            f"httpx.Timeout; got {value!r}"
        )
    return value


def _bad_seconds(value: Any) -> bool:
    if isinstance(value, str | bytes | bool | dict | tuple | list | set):
        return True
    return _is_number(value) and (math.isnan(value) or math.isinf(value) or value <= 0)


def api_key(name: str, value: Any) -> Any:
    """A key: a non-empty ``str``, a pydantic ``SecretStr``, a function that returns one (newer LangChain
    clients take that), or None. Its value is never repeated, even when it is the wrong type."""
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    if text is None or callable(text) or (isinstance(text, str) and text.strip()):
        return value
    if isinstance(text, str):
        raise ConfigError(
            f"{name} is an empty string: give the key, or leave it out to read it from the provider's "
            "environment variable"
        )
    raise ConfigError(
        f"{name} must be the key as a string (or a SecretStr, or a function that returns it), got a value of "
        f"type {type(value).__name__} (not shown: it may be a secret)"
    )
