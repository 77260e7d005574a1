"""What provider modules share and ``_models`` reads: settings a provider needs, and the errors for them.

Nothing heavy here (no SDK, no LangChain): ``_models`` imports it when the registry loads.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coffee_nb.errors._errors import CoffeeError, MissingAPIKeyError

__all__ = ["ContentFilteredError", "MissingSettingError", "Setting", "installed", "missing_extra", "secret"]


@dataclass(frozen=True, slots=True)
class Setting:
    """Something a provider needs besides its key: one of the ``env`` variables, or ``param`` in
    ``ModelSpec(params=...)``. ``what`` says what it is, for the error when it is missing."""

    env: tuple[str, ...]
    param: str | None
    what: str

    def given(self, params: Mapping[str, Any]) -> bool:
        return (self.param is not None and params.get(self.param) is not None) or any(
            os.environ.get(v) for v in self.env
        )


class MissingSettingError(MissingAPIKeyError):
    """A provider's endpoint, API version or region is not set. Like a missing key, an error of that
    attempt (classified as ``auth``): the chain falls back past it."""

    def __init__(self, provider: str, setting: Setting) -> None:
        self.provider = provider
        self.env_var = " or ".join(setting.env)
        how = f"set {self.env_var}" if setting.env else ""
        if setting.param is not None:
            how += f"{' or pass' if how else 'pass'} ModelSpec(params={{{setting.param!r}: ...}})"
        CoffeeError.__init__(self, f"Provider {provider!r} needs {setting.what}: {how}.")


class ContentFilteredError(CoffeeError):
    """The provider answered but refused or blocked the content (a finish reason such as ``SAFETY`` or
    ``content_filter``, or a blocked prompt): classified as ``content_filter``, raised with its reason by
    default (``Policy(on_content_filter="fallback")`` routes around it)."""


def missing_extra(provider: str, extra: str) -> ImportError:
    """The error for a provider whose optional dependencies are not installed: the exact pip line."""
    return ImportError(f"{provider} models need the {extra} extra: pip install 'coffee_nb[{extra}]'")


def installed(module: str | None) -> bool:
    """Is ``module`` importable (without importing it)?"""
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def secret(value: Any) -> str | None:
    """The text of a key given as ``str`` or pydantic ``SecretStr`` (ModelSpec keeps secret params so)."""
    get = getattr(value, "get_secret_value", None)
    text = get() if callable(get) else value
    return text if isinstance(text, str) else None
