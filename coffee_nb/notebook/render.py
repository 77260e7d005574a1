"""How answers, tables and errors look in a notebook: rich reprs with a plain-text twin for nbval."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from coffee_nb._session import Answer, money

__all__ = ["AnswerView", "ErrorBox", "Rendered", "Table"]

STREAM_INTERVAL = 0.1  # seconds between live display updates (throttled)
# Jupyter typesets "$...$" as LaTeX: amounts like "$0.01 … $4.99" would turn into math. MathJax skips these.
NO_MATH = "tex2jax_ignore mathjax_ignore"


def _fenced(text: str) -> tuple[str, str]:
    """(language, code) of the first fenced block, or ("", text) when there is none."""
    m = re.search(r"```([\w+-]*)[^\n]*\n(.*?)```", text, re.DOTALL)
    return (m.group(1), m.group(2).rstrip("\n")) if m else ("", text.strip("\n"))


class Rendered:
    """The final output of a ``%%llm`` cell in its format, with the footer underneath."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def _footer(self) -> str:
        return self.answer.footer()

    def __repr__(self) -> str:  # text/plain: what nbval compares
        a = self.answer
        body = a.text
        if a.format == "json" and a.parsed is not None:
            body = json.dumps(a.parsed, indent=2, ensure_ascii=False)
        elif a.format == "code":
            body = _fenced(a.text)[1]
        notice = f"[{a.notice}]\n" if a.notice else ""
        return f"{notice}{body}\n— {self._footer()}"

    def _repr_markdown_(self) -> str | None:
        a = self.answer
        if a.format in ("text", "html", "json"):
            return None
        notice = f"> {a.notice}\n\n" if a.notice else ""
        body = a.text
        if a.format == "code":
            lang, code = _fenced(a.text)
            body = f"```{lang or 'python'}\n{code}\n```"
        return f"{notice}{body}\n\n<sub class='{NO_MATH}'>{html.escape(self._footer())}</sub>"

    def _repr_html_(self) -> str | None:
        a = self.answer
        if a.format not in ("html", "text"):
            return None
        body = a.text if a.format == "html" else f"<pre>{html.escape(a.text)}</pre>"
        notice = f"<blockquote>{html.escape(a.notice)}</blockquote>" if a.notice else ""
        footer = f"<div class='{NO_MATH}' style='font-size:smaller;opacity:.7'>{html.escape(self._footer())}</div>"
        return f"{notice}{body}{footer}"

    def _repr_json_(self) -> Any:
        a = self.answer
        if a.format != "json" or a.parsed is None:
            return None
        return a.parsed


class AnswerView:
    """What a ``%%llm`` cell shows: tokens stream into one display output updated in place (throttled);
    when the answer (or the error box) is ready the live output goes blank and the answer is displayed.

    No widget is involved: the saved notebook holds the final render as ordinary HTML/text output, so
    it reopens clean without a kernel, and HTML exports and nbval see the answer itself.
    """

    def __init__(self, *, stream: bool, interval: float | None = None) -> None:
        self.stream = stream
        self.interval = STREAM_INTERVAL if interval is None else interval
        self.text = ""
        self.updates = 0
        self._last = 0.0
        self._handle: Any = None
        if stream:
            from IPython.display import display

            self._handle = display(_Live("<i>waiting for the first token…</i>"), display_id=True)

    def token(self, piece: str) -> None:
        self.text += piece
        now = time.monotonic()
        if self._handle is not None and now - self._last >= self.interval:
            self._handle.update(_Live(f"<div style='white-space:pre-wrap'>{html.escape(self.text)} ▌</div>"))
            self._last = now
            self.updates += 1

    def restart(self, info: dict[str, Any]) -> None:
        """A broken stream starts over on another model: clear what was shown, say so."""
        self.text = ""
        if self._handle is not None:
            model = html.escape(str(info.get("to_model", "the next model")))
            self._handle.update(_Live(f"<i>the stream broke; starting over on {model}…</i>"))
            self.updates += 1

    def _show(self, obj: Any) -> None:
        from IPython.display import display

        if self._handle is not None:  # the live text goes blank (not a widget: nothing to break on reload)
            self._handle.update(_Live(""))
        display(obj)  # a new output, so tools that skip display updates (nbval) see it too

    def final(self, answer: Answer) -> None:
        self._show(Rendered(answer))

    def error(self, exc: BaseException) -> None:
        self._show(ErrorBox(exc))


class _Live:
    """The streaming text: HTML for the front end; an empty plain-text twin (nothing worth keeping)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return ""


_ADVICE = {
    "BudgetExceededError": "Raise the limit (%llm_config --daily 10), wait for the reset, or pick a cheaper model.",
    "DeadlineExceededError": "Give the call more time (Policy(deadline=...)) or add a faster fallback model.",
    "AllModelsFailedError": "Check the keys and model names above, or add a fallback (e.g. sandbox/fast) to the chain.",
}


class ErrorBox:
    """A readable box for BudgetExceededError / AllModelsFailedError: what happened, each attempt, what to do."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.kind = type(exc).__name__
        self.lines = str(exc).splitlines() or [self.kind]
        self.advice = _ADVICE.get(self.kind, "")

    def __repr__(self) -> str:
        return "\n".join(
            [f"✖ {self.kind}: {self.lines[0]}", *self.lines[1:], *([f"→ {self.advice}"] if self.advice else [])]
        )

    def _repr_html_(self) -> str:
        rows = "".join(f"<li><code>{html.escape(line.strip())}</code></li>" for line in self.lines[1:])
        return (
            "<div style='border:1px solid #d33;border-radius:4px;padding:6px 10px;background:#fff5f5'>"
            f"<b>✖ {html.escape(self.kind)}</b>: {html.escape(self.lines[0])}"
            f"{f'<ol>{rows}</ol>' if rows else ''}"
            f"{f'<div>→ {html.escape(self.advice)}</div>' if self.advice else ''}</div>"
        )


class Table:
    """A small table with a markdown rendering and an aligned plain-text twin (deterministic for nbval)."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
        self.columns = list(columns)
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]
        self.title = title

    def __repr__(self) -> str:
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c) for i, c in enumerate(self.columns)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [self.title] if self.title else []
        out += [line(self.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(v)}</td>" for v in r) + "</tr>"
            for r in self.rows
        )
        caption = f"<caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>" if self.title else ""
        return f"<table class='{NO_MATH}'>{caption}<tr>{head}</tr>{body}</table>"


def dry_run_table(rows: list[dict[str, Any]]) -> Table:
    periods = list(rows[0]["budget_left_after"]) if rows else []
    columns = ["model", "input tokens", "window", "fits", "worst case", *[f"{p} left after" for p in periods]]
    out = []
    for r in rows:
        est = "" if r["exact"] else "~"
        fits = "?" if r["fits"] is None else ("yes" if r["fits"] else "NO")
        left = [money(v) if v is not None else "?" for v in r["budget_left_after"].values()]
        worst = money(r["worst_case_cost"]) if r["worst_case_cost"] is not None else "unpriced"
        if r["price_source"] == "sandbox" and r["worst_case_cost"] is not None:
            worst += " (sandbox)"
        out.append([r["model"], f"{est}{r['input_tokens']}", r["context_window"] or "?", fits, worst, *left])
    return Table(columns, out, title="Dry run — no call made (worst case: max output tokens at the output price)")
