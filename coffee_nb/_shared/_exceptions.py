"""The root of every exception coffee_nb raises, and the one every layer raises for bad input.

Here, at the bottom, because every layer raises them (a validator, a path, a record sink); their text is
redacted (``_redact``), so no key reaches a message whoever raises them. The rest of the taxonomy (what a
provider's failure means, the errors of a call) is ``coffee_nb.errors``, which re-exports these two.
"""

from __future__ import annotations

from coffee_nb._shared._redact import redact

__all__ = ["CoffeeError", "ConfigError"]


class CoffeeError(Exception):
    """Root of every exception coffee_nb raises itself. Its text never holds a key (see :func:`redact`)."""

    def __str__(self) -> str:
        # messages repeat values users gave (specs, URLs, provider replies): the last line of defence
        return redact(super().__str__())

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback wall: what happened, not where in our code.
        lines = str(self).splitlines() or [""]
        return [f"{type(self).__name__}: {lines[0]}", *lines[1:]]


class ConfigError(CoffeeError, ValueError):
    """A bad model spec, limit or option. Raised at construction, naming the value and the accepted forms."""
