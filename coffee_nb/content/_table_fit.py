"""Cutting a rendering to a token limit: the largest size whose text, counted, fits.

A table's text grows with the rows (or columns, or values) it shows, so the renderers measure candidate
sizes rather than guess from characters: doubling from a size known to fit, then bisecting between the
last that fit and the first that didn't. Every size tried is rendered and counted with the encoding the
caller names, and only a size that was counted is ever returned, so the result fits even where adding a
row happens to cost no token (or, near the end, removes a note).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from coffee_nb._shared._exceptions import ConfigError
from coffee_nb.pricing._tokens import count_tokens

__all__ = ["Fitter", "Rendered"]


class Rendered(NamedTuple):
    """A table rendered for a prompt: its text, the tokens that text counts, and what was left out.

    ``rows_*`` count the data rows (a Series' or 1-D array's values; the flattened values of an array of
    other dimensions); ``cols_*`` the columns (1 for a Series or 1-D array). In ``describe`` mode no rows
    are shown (``rows_shown`` is 0) and ``cols_shown`` counts the columns summarised. ``truncated``: some
    rows (in ``table`` mode) or columns were left out.
    """

    text: str
    tokens: int
    rows_shown: int
    rows_total: int
    cols_shown: int
    cols_total: int
    truncated: bool


class Fitter:
    """Renders candidate sizes with ``build`` and keeps the counted ones that fit in ``max_tokens``."""

    def __init__(self, max_tokens: int, encoding: str) -> None:
        self.max_tokens = max_tokens
        self.encoding = encoding

    def measure(self, text: str) -> int:
        return count_tokens(text, self.encoding)

    def fits(self, text: str) -> tuple[bool, int]:
        tokens = self.measure(text)
        return tokens <= self.max_tokens, tokens

    def largest(self, build: Callable[[int], str], low: int, high: int) -> tuple[int, str, int]:
        """The largest size in ``[low, high]`` whose ``build(size)`` fits, with its text and tokens; ``low``
        must fit (the caller checked, or :meth:`need` raises)."""
        done: dict[int, tuple[bool, str, int]] = {}

        def ok(size: int) -> bool:
            if size not in done:
                text = build(size)
                fit, tokens = self.fits(text)
                done[size] = (fit, text, tokens)
            return done[size][0]

        good, bad = low, high + 1
        probe = max(2 * low, low + 1)
        while good < high:  # doubling: cheap when the answer is small, a few steps when it is large
            probe = min(probe, high)
            if not ok(probe):
                bad = probe
                break
            good, probe = probe, 2 * probe
        while bad - good > 1:
            middle = (good + bad) // 2
            if ok(middle):
                good = middle
            else:
                bad = middle
        ok(good)
        _, text, tokens = done[good]
        return good, text, tokens

    def need(self, text: str, what: str, shortest: str) -> None:
        """Check that ``text``, the shortest rendering of ``what`` (``shortest`` says what it holds), fits:
        a ConfigError naming the minimum if not."""
        fit, tokens = self.fits(text)
        if not fit:
            raise ConfigError(
                f"max_tokens={self.max_tokens} is too small to render {what}: its shortest rendering "
                f"({shortest}) needs {tokens} tokens; pass max_tokens >= {tokens}"
            )
