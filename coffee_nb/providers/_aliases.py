"""Model aliases: short names for model specs (``fast`` → ``openai/gpt-4o-mini``), usable anywhere a
spec is (``%%llm fast``, ``configure(models=["fast"])``, ``AutoPicker("fast")``, ``%llm_compare``).

An alias names one model. It resolves when a chain is built, to the spec it names then (so answers,
records and cache keys carry the real model); changing it affects chains built afterwards.
Process-global, kept in ``_config.ALIASES`` (``reset_defaults()`` forgets them).
"""

from __future__ import annotations

import re

from coffee_nb._shared import _config
from coffee_nb.errors._errors import ConfigError
from coffee_nb.providers._registry import parse_spec, resolve

__all__ = ["aliases", "check_alias", "remove_alias", "resolve", "set_alias"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def aliases() -> dict[str, str]:
    """Every alias and the spec it names, in the order they were set."""
    with _config.ALIASES.lock:
        return dict(_config.ALIASES.names)


def check_alias(name: str, spec: str) -> str:
    """The spec ``name`` would stand for (an alias as ``spec`` is followed); a ConfigError if either is bad."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"an alias name is a short word (letters, digits, '_', '-', '.'; no '/'), like 'fast', got {name!r}"
        )
    target = resolve(spec.strip()) if isinstance(spec, str) else spec
    if not isinstance(target, str):
        raise ConfigError(f"an alias names a 'provider/model' spec, like 'openai/gpt-4o-mini', got {spec!r}")
    provider, model = parse_spec(target)  # a clear error for a bad spec, before anything changes
    return f"{provider}/{model}"


def set_alias(name: str, spec: str) -> str:
    """Make ``name`` stand for ``spec`` (checked now; an alias as ``spec`` is followed). Returns the spec."""
    target = check_alias(name, spec)
    with _config.ALIASES.lock:
        names = dict(_config.ALIASES.names)
        names[name] = target
        _config.ALIASES.names = names  # replaced, never mutated: readers take no lock
    return target


def remove_alias(name: str) -> str:
    """Forget ``name``; returns the spec it named. An unknown name is a ConfigError listing the aliases."""
    with _config.ALIASES.lock:
        names = dict(_config.ALIASES.names)
        if name not in names:
            known = ", ".join(names) or "none set"
            raise ConfigError(f"no alias {name!r} (aliases: {known})")
        target = names.pop(name)
        _config.ALIASES.names = names
    return target
