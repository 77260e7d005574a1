"""The tables line magics return: pandas DataFrames whose numbers stay numbers (``cost_usd`` is a float,
``started_at`` a datetime) for your code, shown formatted: money as ``$0.00000038``, times to the second,
``—`` and a reason where a value is missing, a total row, every column (nothing cut off).

``StyledFrame`` is a ``DataFrame`` subclass that only changes how it *shows itself*: anything derived
from it (``df.head()``, ``df[["cost_usd"]]``, ``df.copy()``) is a plain DataFrame again. The HTML is a
plain ``<table>`` marked so MathJax leaves it alone (JupyterLab would typeset ``$0.01 … $0.02`` as math)
with every ``$`` written as an entity; the plain-text twin is aligned and deterministic.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from coffee_nb._shared._format import money
from coffee_nb._shared._markdown import NO_MATH  # "$0.01 … $4.99" must not turn into LaTeX
from coffee_nb.errors._errors import ConfigError, redact
from coffee_nb.providers._aliases import aliases

if TYPE_CHECKING:
    from coffee_nb.budget import Ledger
    from coffee_nb.session._session import Session

__all__ = [
    "Column",
    "StyledFrame",
    "alias_frame",
    "config_frame",
    "costs_frame",
    "history_frame",
    "ledger_text",
    "styled",
]

MISSING = "—"
PROMPT_WIDTH = 30  # characters of the prompt shown in %llm_history

# how a value shows: (value, its row) -> text
Formatter = Callable[[Any, Mapping[str, Any]], str]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return False


def usd(value: Any, row: Mapping[str, Any] | None = None) -> str:
    """``$0.00000038`` (never ``3.8e-07``); a missing amount is ``—``."""
    if _missing(value):
        return MISSING
    try:
        amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    return money(amount)


def count(value: Any, row: Mapping[str, Any] | None = None) -> str:
    return MISSING if _missing(value) else f"{int(value):,}"


def seconds(value: Any, row: Mapping[str, Any] | None = None) -> str:
    if _missing(value):
        return MISSING
    return f"{float(value):.2f} s" if value < 10 else f"{float(value):.1f} s"


def share(value: Any, row: Mapping[str, Any] | None = None) -> str:
    return MISSING if _missing(value) else f"{float(value):.0%}"


def _local(value: Any) -> Any:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert(dt.datetime.now().astimezone().tzinfo) if stamp.tzinfo is not None else stamp


def moment(value: Any, row: Mapping[str, Any] | None = None) -> str:
    """A timestamp in the machine's local time, to the second."""
    return MISSING if _missing(value) else str(_local(value).strftime("%Y-%m-%d %H:%M:%S"))


def clock(value: Any, row: Mapping[str, Any] | None = None) -> str:
    """The time of day only (local, to the second): for a column whose header says the date."""
    return MISSING if _missing(value) else str(_local(value).strftime("%H:%M:%S"))


def text(value: Any, row: Mapping[str, Any] | None = None) -> str:
    if _missing(value):
        return ""
    if isinstance(value, (bool,)):
        return "yes" if value else ""
    return str(value)


def flag(value: Any, row: Mapping[str, Any] | None = None) -> str:
    return "yes" if not _missing(value) and bool(value) else ""


@dataclass(frozen=True)
class Column:
    """How one column shows: its header, formatter and alignment (numbers right)."""

    label: str
    fmt: Formatter = text
    right: bool = False


@dataclass
class _Style:
    title: str
    columns: dict[str, Column]  # the frame's column (or the index's name) → how it shows; others: as text
    index: bool  # show the index as the first column
    total: Callable[[pd.DataFrame], dict[str, str]] | None = None  # the total row, from the frame's data
    notes: list[str] = field(default_factory=list)


class StyledFrame(pd.DataFrame):  # type: ignore[misc]  # pandas ships no type information
    """A DataFrame that shows itself formatted (see the module doc); its data is untouched."""

    _metadata: ClassVar[list[str]] = ["_style"]

    @property
    def _constructor(self) -> Any:
        return pd.DataFrame  # anything derived is a plain DataFrame: the styling describes this one

    # -- what is shown ---------------------------------------------------------------------------
    def _grid(self) -> tuple[list[str], list[bool], list[list[str]], list[str] | None]:
        """Headers, right-alignment, body cells and the total row, all as text."""
        style: _Style = getattr(self, "_style", None) or _Style("", {}, index=True)
        frame = pd.DataFrame(self)
        keys: list[Any] = list(frame.columns)
        index_name = frame.index.name or ""
        specs = [style.columns.get(str(k), Column(str(k))) for k in keys]
        if style.index:
            specs.insert(0, style.columns.get(str(index_name), Column(str(index_name))))
        rows: list[list[str]] = []
        for label, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
            row = dict(zip((str(k) for k in keys), values, strict=True))
            cells = [label, *values] if style.index else list(values)
            rows.append([spec.fmt(v, row) for spec, v in zip(specs, cells, strict=True)])
        total = None
        if style.total is not None and len(frame):
            found = style.total(frame)
            names = ([str(index_name)] if style.index else []) + [str(k) for k in keys]
            total = [found.get(n, "") for n in names]
        return [s.label for s in specs], [s.right for s in specs], rows, total

    def __repr__(self) -> str:  # text/plain: what print(), a terminal and nbval see
        style: _Style = getattr(self, "_style", None) or _Style("", {}, index=True)
        heads, right, rows, total = self._grid()
        body = rows + ([total] if total else [])
        widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(heads)]

        def line(cells: Sequence[str]) -> str:
            out = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
            return "  ".join(out).rstrip()

        out = [style.title] if style.title else []
        out += [line(heads), line(["-" * w for w in widths]), *(line(r) for r in rows)]
        if total:
            out += [line(["-" * w for w in widths]), line(total)]
        if not rows:
            out.append("(no rows yet)")
        return "\n".join(out + style.notes)

    def _repr_html_(self) -> str:
        style: _Style = getattr(self, "_style", None) or _Style("", {}, index=True)
        heads, right, rows, total = self._grid()

        def cell(tag: str, value: str, r: bool, extra: str = "") -> str:
            align = "right" if r else "left"
            style = f"text-align:{align};white-space:nowrap;padding:2px 6px;{extra}"
            return f"<{tag} style='{style}'>{_html(value)}</{tag}>"

        head = "".join(cell("th", h, r) for h, r in zip(heads, right, strict=True))
        body = "".join(
            "<tr>" + "".join(cell("td", v, r) for v, r in zip(row, right, strict=True)) + "</tr>" for row in rows
        )
        if not rows:
            body = f"<tr><td colspan='{len(heads)}'><i>no rows yet</i></td></tr>"
        foot = ""
        if total:
            cells = "".join(
                cell("td", v, r, "font-weight:bold;border-top:1px solid currentColor")
                for v, r in zip(total, right, strict=True)
            )
            foot = f"<tfoot><tr class='coffee-nb-total'>{cells}</tr></tfoot>"
        caption = (
            f"<caption style='text-align:left;caption-side:top'><b>{_html(style.title)}</b></caption>"
            if style.title
            else ""
        )
        notes = "".join(f"<div style='font-size:smaller;opacity:.75'>{_html(n)}</div>" for n in style.notes)
        return (
            f"<div class='coffee-nb-table {NO_MATH}' style='overflow-x:auto;max-width:100%'>"
            f"<table class='{NO_MATH}' style='width:auto'>{caption}<thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody>{foot}</table>{notes}</div>"
        )


def _html(value: str) -> str:
    return html.escape(value).replace("$", "&#36;")  # an entity, and the class above: never math


def styled(
    frame: pd.DataFrame,
    title: str,
    columns: Mapping[str, Column],
    *,
    index: bool = True,
    total: Callable[[pd.DataFrame], dict[str, str]] | None = None,
    notes: Sequence[str] = (),
) -> StyledFrame:
    """``frame``'s data (shared, not copied) as a StyledFrame that shows ``columns`` formatted."""
    out = StyledFrame(frame)
    out._style = _Style(title, dict(columns), index, total, list(notes))
    return out


# -- %llm_costs --------------------------------------------------------------------------------------
def _cost_cell(value: Any, row: Mapping[str, Any]) -> str:
    if not _missing(value):
        return usd(value)
    calls, errors = row.get("calls"), row.get("errors")
    if calls is not None and errors is not None and not _missing(calls) and calls == errors:
        return f"{MISSING} (failed)"  # only failed attempts: nothing was billed
    return f"{MISSING} (unpriced)"


COST_COLUMNS = {
    "model": Column("model"),
    "calls": Column("calls", count, right=True),
    "errors": Column("errors", count, right=True),
    "fallbacks": Column("fallbacks", count, right=True),
    "input_tokens": Column("tokens in", count, right=True),
    "output_tokens": Column("tokens out", count, right=True),
    "cost_usd": Column("cost", _cost_cell, right=True),
    "cost_share": Column("share", share, right=True),
    "unpriced_calls": Column("unpriced", count, right=True),
    "p50_latency_s": Column("p50", seconds, right=True),
    "p95_latency_s": Column("p95", seconds, right=True),
}


def _cost_total(frame: pd.DataFrame) -> dict[str, str]:
    out = {"model": "total"}
    for name in ("calls", "errors", "fallbacks", "input_tokens", "output_tokens", "unpriced_calls"):
        if name in frame:
            out[name] = count(frame[name].sum())
    if "cost_usd" in frame:
        priced = frame["cost_usd"].dropna()
        out["cost_usd"] = usd(sum((Decimal(repr(float(v))) for v in priced), Decimal(0))) if len(priced) else MISSING
        if "cost_share" in frame:
            out["cost_share"] = share(1.0) if len(priced) and frame["cost_usd"].sum() else share(0.0)
    return out


def costs_frame(summary: pd.DataFrame) -> StyledFrame:
    """``%llm_costs``: the per-model summary (``LocalMetrics.summary()``), styled, with a total row."""
    return styled(summary, "coffee_nb costs this session", COST_COLUMNS, total=_cost_total)


# -- %llm_history ------------------------------------------------------------------------------------
HISTORY_COLUMNS = {
    "started_at": Column("started", moment),
    "model": Column("model"),
    "role": Column("role"),
    "outcome": Column("outcome"),
    "error_class": Column("error"),
    "prompt": Column("prompt"),
    "input_tokens": Column("in", count, right=True),
    "output_tokens": Column("out", count, right=True),
    "cost_usd": Column("cost", lambda v, row: usd(v) if not _missing(v) else _history_cost(row), right=True),
    "latency_s": Column("latency", seconds, right=True),
    "cache_hit": Column("cached", flag),
}


def _history_cost(row: Mapping[str, Any]) -> str:
    return MISSING if row.get("outcome") != "ok" else f"{MISSING} (unpriced)"


def short(prompt: str | None, width: int = PROMPT_WIDTH) -> str:
    """The prompt on one line, cut to ``width`` characters, keys taken out."""
    if not prompt:
        return ""
    flat = " ".join(redact(prompt).split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def history_frame(attempts: pd.DataFrame, prompts: Mapping[str, str], n: int) -> StyledFrame:
    """``%llm_history``: the last ``n`` attempts, newest last, with a short prompt column."""
    cols = [c for c in HISTORY_COLUMNS if c in attempts.columns or c == "prompt"]
    tail = attempts.tail(n).reset_index(drop=True)
    ids = tail["call_id"].astype(object) if "call_id" in tail else pd.Series([None] * len(tail), dtype=object)
    tail["prompt"] = [short(prompts.get(str(i))) if isinstance(i, str) else "" for i in ids]
    zone = dt.datetime.now().astimezone().strftime("%Z")
    columns = dict(HISTORY_COLUMNS)
    days = {moment(v)[:10] for v in tail["started_at"] if not _missing(v)} if "started_at" in tail else set()
    if len(days) == 1:  # one day: said once in the header, the rows keep the time (a narrower table)
        columns["started_at"] = Column(f"{days.pop()} ({zone})", clock)
    else:
        columns["started_at"] = Column(f"started ({zone})", moment)
    return styled(tail[cols], f"coffee_nb history (last {n} attempts, newest last)", columns, index=False)


# -- %llm_config -------------------------------------------------------------------------------------
def ledger_text(ledger: Ledger) -> str:
    """Where spend is kept, in words (a Redis URL without its password)."""
    name = type(ledger).__name__
    if name == "SQLiteLedger":
        path, ns = getattr(ledger, "path", "?"), getattr(ledger, "ns", "default")
        return f"SQLite file {path}" + ("" if ns == "default" else f" (namespace {ns})")
    if name == "MemoryLedger":
        return "in memory (this kernel only; gone on restart)"
    if name == "RedisLedger":
        ns = getattr(ledger, "ns", "default")
        return f"Redis {ledger}" + ("" if ns == "default" else f" (namespace {ns})")
    return redact(repr(ledger))


def config_frame(session: Session) -> StyledFrame:
    """``%llm_config``: the session's settings, one row each (``setting`` → ``value``, as text)."""
    chain, notice = session.chain()
    try:
        budget = session.budget
        limits = ", ".join(f"{r.label} {money(r.amount)}{'' if r.hard else ' (soft)'}" for r in budget.rules)
        ledger = ledger_text(budget.ledger)
    except ConfigError as exc:
        limits, ledger = "unknown", f"can't be used: {exc}"
    named = aliases()
    rows = {
        "models": " → ".join(str(m) for m in chain) + (" (offline sandbox: no API keys)" if notice else ""),
        "system": session.system or MISSING,
        "temperature": str(session.temperature) if session.temperature is not None else "model default",
        "max tokens": str(session.max_tokens) if session.max_tokens else "model default",
        "budget": limits or "none",
        "ledger": ledger,
        "cache": "on" if session.cache_enabled else "off",
        "base url": session.base_url or MISSING,
        "aliases": ", ".join(f"{k} = {v}" for k, v in named.items()) if named else MISSING,
    }
    frame = pd.DataFrame({"value": [redact(v) for v in rows.values()]}, index=pd.Index(list(rows), name="setting"))
    return styled(frame, "coffee_nb session", {"setting": Column("setting"), "value": Column("value")})


# -- %llm_alias --------------------------------------------------------------------------------------
def alias_frame() -> StyledFrame:
    """``%llm_alias``: every alias and the model it stands for."""
    named = aliases()
    frame = pd.DataFrame({"model": list(named.values())}, index=pd.Index(list(named), name="alias"))
    notes = [] if named else ["no aliases yet: %llm_alias fast=openai/gpt-4o-mini"]
    return styled(frame, "coffee_nb model aliases", {"alias": Column("alias"), "model": Column("model")}, notes=notes)
