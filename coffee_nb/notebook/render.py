"""How answers, tables and errors look in a notebook: rich reprs with a plain-text twin for nbval.

Every ``$`` we show stays a dollar: markdown goes through :func:`~coffee_nb._shared._markdown.markdown_safe`
(amounts literal, real math kept) and HTML we build carries the classes MathJax skips.
"""

from __future__ import annotations

import contextvars
import html
import json
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._markdown import NO_MATH, literal_dollars, markdown_safe
from coffee_nb.notebook._advice import advice, box_lines
from coffee_nb.session._session import Answer, money

if TYPE_CHECKING:
    from coffee_nb.invoke._events import CallEvent

__all__ = ["AnswerView", "ErrorBox", "Notice", "Rendered", "Table"]

STREAM_INTERVAL = 0.1  # seconds between live display updates (throttled)
_FOOTER_STYLE = "font-size:smaller;opacity:.7"


def _fenced(text: str) -> tuple[str, str]:
    """(language, code) of the first fenced block, or ("", text) when there is none."""
    m = re.search(r"```([\w+-]*)[^\n]*\n(.*?)```", text, re.DOTALL)
    return (m.group(1), m.group(2).rstrip("\n")) if m else ("", text.strip("\n"))


# JupyterLab shows markdown code blocks with ``word-break: break-all``: long lines break mid-word. Code is
# shown as our own block instead: no wrapping (it scrolls sideways, like the input cell), coloured with
# the theme's own editor colours (light or dark alike).
_CODE_STYLE = "white-space:pre;overflow-x:auto;word-break:normal;overflow-wrap:normal;padding:4px 0"
_TEXT_STYLE = "white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere"  # breaks only over-long words
_TOKEN_COLOURS = (  # pygments token type → JupyterLab's CodeMirror colour variable (most specific first)
    ("Comment", "comment"),
    ("Keyword.Constant", "atom"),
    ("Keyword", "keyword"),
    ("Name.Builtin", "builtin"),
    ("Name.Function", "def"),
    ("Name.Class", "def"),
    ("Name.Decorator", "meta"),
    ("Name.Tag", "tag"),
    ("Name.Attribute", "attribute"),
    ("Literal.String", "string"),
    ("Literal.Number", "number"),
    ("Operator", "operator"),
    ("Punctuation", "punctuation"),
)


def code_html(code: str, lang: str = "") -> str:
    """``code`` as a highlighted ``<pre>`` that never wraps mid-word (pygments finds the tokens)."""
    from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]  # lazy: pygments (no types)
    from pygments.token import string_to_tokentype  # type: ignore[import-untyped]  # lazy: pygments
    from pygments.util import ClassNotFound  # type: ignore[import-untyped]  # lazy: pygments

    try:
        lexer = get_lexer_by_name(lang or "text", stripnl=False, ensurenl=False)
    except ClassNotFound:
        lexer = get_lexer_by_name("text", stripnl=False, ensurenl=False)
    kinds = [(string_to_tokentype(name), var) for name, var in _TOKEN_COLOURS]
    parts: list[str] = []
    for token, value in lexer.get_tokens(code):
        var = next((v for kind, v in kinds if token in kind), None)
        text = html.escape(value, quote=False)
        parts.append(f"<span style='color:var(--jp-mirror-editor-{var}-color)'>{text}</span>" if var else text)
    return f"<pre class='{NO_MATH}' style='{_CODE_STYLE}'>{''.join(parts)}</pre>"


def _md_footer(text: str) -> str:
    return f"<sub class='{NO_MATH}'>{literal_dollars(html.escape(text))}</sub>"


class Rendered:
    """The final output of a ``%%llm`` cell in its format, with the footer underneath.

    ``warning`` is a one-line notice shown above the answer (e.g. an answer asked for as JSON that isn't).
    """

    def __init__(self, answer: Answer, warning: str | None = None) -> None:
        self.answer = answer
        self.warning = warning

    def _footer(self) -> str:
        return self.answer.footer()

    def _json(self) -> str | None:
        """The parsed JSON, pretty (None: not asked for JSON, or the answer wasn't JSON)."""
        a = self.answer
        if a.format != "json" or a.parsed is None:
            return None
        return json.dumps(a.parsed, indent=2, ensure_ascii=False)

    def __repr__(self) -> str:  # text/plain: what nbval compares
        a = self.answer
        body = self._json() or a.text
        if a.format == "code":
            body = _fenced(a.text)[1]
        notice = f"[{a.notice}]\n" if a.notice else ""
        warning = f"⚠ {self.warning}\n" if self.warning else ""
        return f"{notice}{warning}{body}\n— {self._footer()}"

    def _repr_markdown_(self) -> str | None:
        a = self.answer
        if a.format != "markdown":  # code and JSON are our own HTML blocks (see code_html), text and html too
            return None
        notice = f"> {literal_dollars(html.escape(a.notice))}\n\n" if a.notice else ""
        warning = f"**⚠ {literal_dollars(html.escape(self.warning))}**\n\n" if self.warning else ""
        body = markdown_safe(a.text)
        return f"{notice}{warning}{body}\n\n{_md_footer(self._footer())}"

    def _repr_html_(self) -> str | None:
        a = self.answer
        if a.format not in ("html", "text", "code", "json"):
            return None
        notice = f"<blockquote class='{NO_MATH}'>{html.escape(a.notice)}</blockquote>" if a.notice else ""
        footer = f"<div class='{NO_MATH}' style='{_FOOTER_STYLE}'>{html.escape(self._footer())}</div>"
        if a.format in ("code", "json"):
            warning = f"<div class='{NO_MATH}'><b>⚠ {html.escape(self.warning)}</b></div>" if self.warning else ""
            pretty = self._json()
            if pretty is not None:
                block = code_html(pretty, "json")
            elif a.format == "json":  # not JSON after all: the raw text, exactly as it came
                block = code_html(a.text)
            else:
                lang, code = _fenced(a.text)
                block = code_html(code, lang or "python")
            return f"{notice}{warning}{block}{footer}"
        if a.format == "text":  # MathJax never looks inside <pre>
            return f"{notice}<pre class='{NO_MATH}' style='{_TEXT_STYLE}'>{html.escape(a.text)}</pre>{footer}"
        return f"<div class='{NO_MATH}'>{notice}{a.text}{footer}</div>"  # amounts in an HTML answer stay literal


class Notice:
    """A one-line notice styled like the footer (a budget warning, an interrupted call); text twin for nbval."""

    def __init__(self, text: str, *, icon: str = "⚠", color: str = "#b26b00") -> None:
        self.text = text
        self.icon = icon
        self.color = color

    def __repr__(self) -> str:
        return f"{self.icon} {self.text}"

    def _repr_html_(self) -> str:
        return (
            f"<div class='coffee-nb-notice {NO_MATH}' style='{_FOOTER_STYLE};color:{self.color}'>"
            f"{self.icon} {html.escape(self.text)}</div>"
        )


class AnswerView:
    """What a ``%%llm`` cell shows: tokens stream into one display output updated in place (throttled);
    when the answer (or the error box) is ready the live output goes blank and the answer is displayed.
    While nothing has arrived, the live output says what the call is doing (retries, fallbacks).

    No widget is involved: the saved notebook holds the final render as ordinary HTML/text output, so
    it reopens clean without a kernel, and HTML exports and nbval see the answer itself.
    """

    WAITING = "waiting for the first token…"

    def __init__(self, *, stream: bool, interval: float | None = None) -> None:
        self.stream = stream
        self.interval = STREAM_INTERVAL if interval is None else interval
        self.text = ""
        self.updates = 0
        self.statuses: list[str] = []  # what the call did while nothing arrived, in order
        self._steps: dict[str, str] = {}
        self._last = 0.0
        self._handle: Any = None
        self._lock = threading.RLock()  # tokens (the caller's thread) and the trailing flush (a timer's)
        self._pending: threading.Timer | None = None
        self._done = False
        if stream:
            from IPython.display import display  # lazy: IPython

            self._handle = display(_Live(f"<i>{self.WAITING}</i>"), display_id=True)

    def _update(self, markup: str) -> None:
        if self._handle is not None:
            self._handle.update(_Live(markup))
            self.updates += 1

    def token(self, piece: str) -> None:
        with self._lock:
            self.text += piece
            if self._handle is None or self._done:
                return
            wait = self.interval - (time.monotonic() - self._last)
            if wait <= 0:
                self._flush()
            elif self._pending is None:  # shown when the interval is up, even if no token follows (a stall)
                self._pending = threading.Timer(wait, contextvars.copy_context().run, (self._flush_pending,))
                self._pending.daemon = True
                self._pending.start()

    def _flush(self) -> None:
        self._update(self._partial(" ▌"))
        self._last = time.monotonic()

    def _flush_pending(self) -> None:
        with self._lock:
            self._pending = None
            if self.text and not self._done:
                self._flush()

    def _stop_pending(self) -> None:
        with self._lock:
            self._done = True
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None

    def _partial(self, cursor: str = "") -> str:
        return f"<div style='white-space:pre-wrap'>{html.escape(self.text)}{cursor}</div>"

    def status(self, line: str, key: str | None = None) -> None:
        """Say what the call is doing (``openai/gpt-4o-mini: 429, retrying in 2 s (1/2)…``), live, after
        the earlier steps of the call (a line with the ``key`` of an earlier one replaces it: the latest
        retry of a model, not each). Shown while no text has arrived; without streaming, the live output
        appears for it."""
        self._steps[key or f"#{len(self._steps)}"] = line
        self.statuses = list(self._steps.values())
        if self.text:
            return
        markup = f"<i>{html.escape(' '.join(self.statuses))}</i>"
        if self._handle is None:
            from IPython.display import display  # lazy: IPython

            self._handle = display(_Live(markup), display_id=True)
            self.updates += 1
        else:
            self._update(markup)

    def event(self, event: CallEvent) -> None:
        """A step of the call (``coffee_nb.invoke._events``), shown with :meth:`status` (a model that failed after
        its retries were said needs no second line)."""
        if event.kind == "failed" and f"retry:{event.model}" in self._steps:
            return
        self.status(str(event), event.key)

    def restart(self, info: dict[str, Any]) -> None:
        """A broken stream starts over on another model: clear what was shown, say so."""
        model = str(info.get("to_model", "the next model"))
        with self._lock:
            self.text = ""
            self._update(f"<i>the stream broke; starting over on {html.escape(model)}…</i>")

    def _show(self, obj: Any) -> None:
        from IPython.display import display  # lazy: IPython

        self.clear()
        display(obj)  # a new output, so tools that skip display updates (nbval) see it too

    def clear(self) -> None:
        """The live output goes blank (not a widget: nothing to break on reload)."""
        self._stop_pending()
        if self._handle is not None:
            self._handle.update(_Live(""))

    def final(self, answer: Answer, warning: str | None = None) -> None:
        self._show(Rendered(answer, warning))

    def error(self, exc: BaseException, **kwargs: Any) -> None:
        self._show(ErrorBox(exc, **kwargs))

    def notice(self, text: str, **kwargs: Any) -> None:
        """The call ends with a one-line notice (interrupted): text that streamed so far stays, without its
        cursor (it may have been paid for); a placeholder or status line goes."""
        if not self.text or self._handle is None:
            self._show(Notice(text, **kwargs))
            return
        from IPython.display import display  # lazy: IPython

        self._stop_pending()
        self._update(self._partial())
        display(Notice(text, **kwargs))


class _Live:
    """The streaming text: HTML for the front end; an empty plain-text twin (nothing worth keeping)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return f"<div class='{NO_MATH}'>{self.markup}</div>" if self.markup else ""

    def __repr__(self) -> str:
        return ""


class ErrorBox:
    """One readable box for an error the cell ends with: what happened, each attempt (numbered once),
    and advice that fits the cause (see ``_advice``). The cell shows nothing else for it."""

    def __init__(self, exc: BaseException, *, kind: str | None = None) -> None:
        self.exc = exc
        self.kind = kind or type(exc).__name__
        self.headline, self.details = box_lines(exc)
        self.advice = advice(exc)
        self.lines = [self.headline, *self.details]  # (kept for callers that read them)

    def __repr__(self) -> str:
        numbered = [f"  {i}. {line}" for i, line in enumerate(self.details, 1)]
        return "\n".join([f"✖ {self.kind}: {self.headline}", *numbered, *(f"→ {a}" for a in self.advice)])

    def _repr_html_(self) -> str:
        rows = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in self.details)
        tips = "".join(f"<div>→ {html.escape(a)}</div>" for a in self.advice)
        return (
            f"<div class='coffee-nb-error {NO_MATH}' "
            "style='border:1px solid #d33;border-radius:4px;padding:6px 10px;background:#fff5f5'>"
            f"<b>✖ {html.escape(self.kind)}</b>: {html.escape(self.headline)}"
            f"{f'<ol>{rows}</ol>' if rows else ''}{tips}</div>"
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
    images = bool(rows) and bool(rows[0].get("images"))
    columns = ["model", "input tokens", *(["images"] if images else []), "window", "fits", "worst case"]
    columns += [f"{p} left after" for p in periods]
    out = []
    for r in rows:
        est = "" if r["exact"] else "~"
        fits = "?" if r["fits"] is None else ("yes" if r["fits"] else "NO")
        seen: list[str] = []
        if images:  # how many, their share of the input tokens, and whether this model takes them at all
            about = "" if r.get("image_tokens_exact") else "~"
            seen = [f"{r['images']} ({about}{r['image_tokens']} tokens)"]
            if r.get("vision") is False:
                seen, fits = [f"{r['images']}: no image input (skipped)"], "NO"
        left = [money(v) if v is not None else "?" for v in r["budget_left_after"].values()]
        worst = money(r["worst_case_cost"]) if r["worst_case_cost"] is not None else "unpriced"
        if r["price_source"] == "sandbox" and r["worst_case_cost"] is not None:
            worst += " (sandbox)"
        out.append([r["model"], f"{est}{r['input_tokens']}", *seen, r["context_window"] or "?", fits, worst, *left])
    return Table(columns, out, title="Dry run — no call made (worst case: max output tokens at the output price)")
