"""How a provider's chat model takes call parameters: data, applied where a candidate's kwargs are built.

A chain passes the same ``temperature`` and ``max_tokens`` to every model; providers spell the output
cap differently (``max_output_tokens``, ``num_predict``), take different sampling parameters, and some
reasoning models refuse ``temperature`` outright. Translating here means a parameter a provider does not
take is renamed or dropped, never a ``TypeError`` or a 400 that ends the chain.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAMPLING", "Params"]

log = logging.getLogger("coffee_nb")

# The sampling parameters a chain may pass to any model. Anything else (tools, response_format, ...)
# goes through untouched: it is the caller's, for a model that takes it.
SAMPLING = frozenset({"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty"})


@dataclass(frozen=True, slots=True)
class Params:
    """A provider's call-parameter rules.

    ``max_tokens``: how its chat model spells the output cap at call time (``max_tokens_for``: ``(model-name
    regex, spelling)`` pairs for models that want another, Azure's reasoning deployments). ``sampling``: the sampling
    parameters it takes (others are dropped). ``renames``: other spellings (Mistral's ``random_seed``).
    ``refuses``: ``(model-name regex, parameters)`` pairs: models that reject those parameters (OpenAI's
    reasoning models and ``temperature``), which are dropped for them. ``extra_body``: sampling parameters
    an OpenAI-compatible server takes outside the OpenAI schema (sent in ``extra_body``). ``nest``: the
    parameters go inside this dict argument, over the model's own values of ``nest_fields`` (Ollama's
    ``options``, which replaces the model's own options when given).
    """

    max_tokens: str = "max_tokens"
    max_tokens_for: tuple[tuple[str, str], ...] = ()
    sampling: frozenset[str] = SAMPLING
    renames: Mapping[str, str] = field(default_factory=dict)
    refuses: tuple[tuple[str, frozenset[str]], ...] = ()
    extra_body: frozenset[str] = frozenset()
    nest: str | None = None
    nest_fields: tuple[str, ...] = ()

    def apply(
        self, model: str, kwargs: Mapping[str, Any], chat_model: Any = None, stop: list[str] | None = None
    ) -> dict[str, Any]:
        """``kwargs`` for a call of ``model`` in the spelling this provider takes (a new dict)."""
        out = dict(kwargs)
        spelling = next((s for pattern, s in self.max_tokens_for if _compiled(pattern).search(model)), self.max_tokens)
        if spelling != "max_tokens" and "max_tokens" in out:
            cap = out.pop("max_tokens")
            out.setdefault(spelling, cap)  # an explicit provider spelling wins
        present = SAMPLING.intersection(out)
        if present:
            refused = self._refused(model)
            for name in sorted(present):
                if name in refused or (name not in self.sampling and name not in self.extra_body):
                    log.debug("coffee_nb: %s does not take %s; dropped", model, name)
                    del out[name]
                elif name in self.extra_body:
                    out["extra_body"] = {**(out.get("extra_body") or {}), name: out.pop(name)}
        for old, new in self.renames.items():
            if old in out:
                out.setdefault(new, out.pop(old))
        if self.nest is not None:
            out = self._nested(out, chat_model, stop)
        return out

    def _refused(self, model: str) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for pattern, names in self.refuses:
            if _compiled(pattern).search(model):
                found |= names
        return found

    def _nested(self, out: dict[str, Any], chat_model: Any, stop: list[str] | None) -> dict[str, Any]:
        assert self.nest is not None
        moving = {k: out.pop(k) for k in [*sorted(SAMPLING), self.max_tokens] if k in out}
        if not moving:
            return out
        given = out.get(self.nest)
        if isinstance(given, Mapping):  # the caller's own dict: ours only fill what it leaves out
            out[self.nest] = {**moving, **given}
            return out
        # the dict replaces the model's own settings: start from them (and the call's stop sequences,
        # which the model would otherwise have put there itself)
        base = {f: v for f in self.nest_fields if (v := getattr(chat_model, f, None)) is not None}
        if stop is not None:
            base["stop"] = stop
        out[self.nest] = {**base, **moving}
        return out


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(pattern, re.IGNORECASE)
    return found
