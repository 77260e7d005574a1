"""How a :class:`~coffee_nb.Comparison` looks: the answers side by side (markdown, each in a scrolling box,
optionally with the words that differ from the first model's answer marked), the models × metrics table
(the judge's own calls and cost on a row of their own) and the judge's verdicts with its consistency. A
static display (``text/markdown`` with HTML inside, and a plain-text twin), so saved notebooks and HTML
exports show it without a kernel.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb._shared._markdown import NO_MATH  # "$0.01 … $4.99" must not turn into LaTeX

if TYPE_CHECKING:
    from coffee_nb.comparison._comparison import Comparison

__all__ = ["CompareView", "text_summary"]

BOX = "max-height:22em;overflow:auto;padding:0 6px;border-left:3px solid #ddd"
_WORDS = re.compile(r"\S+|\s+")


class CompareView:
    """The display of a comparison (``comparison.view(diff=True, rows=5)``); ``rows``: how many rows of a
    comparison over a DataFrame show their answers (the metrics cover them all)."""

    def __init__(self, comparison: Comparison, *, diff: bool = False, rows: int = 10) -> None:
        self.comparison = comparison
        self.diff = diff
        self.rows = rows

    def __repr__(self) -> str:
        return text_summary(self.comparison)

    def _repr_markdown_(self) -> str:
        cmp = self.comparison
        parts = [_no_dollars(_header(cmp))]
        labels = list(cmp.answers.index)
        parts += [self._answers(label) for label in labels[: self.rows]]
        if len(labels) > self.rows:
            parts.append(f"<p><i>… answers of {len(labels) - self.rows} more rows in <code>.frame</code></i></p>")
        parts.append(_no_dollars(metrics_html(cmp)))
        if cmp.judge is not None:
            parts.append(_no_dollars(judge_html(cmp)))
        # blank lines between blocks: markdown inside each answer's cell is rendered as markdown
        return f"<div class='coffee-nb-compare {NO_MATH}'>\n\n" + "\n\n".join(parts) + "\n\n</div>"

    def _answers(self, label: Any) -> str:
        cmp = self.comparison
        frame = cmp.frame
        heads = "".join(f"<th style='text-align:left'>{html.escape(m)}</th>" for m in cmp.models)
        title = f"<p><b>row {html.escape(str(label))}</b></p>\n" if cmp.over else ""
        first = cmp.answers.loc[label, cmp.models[0]] if cmp.models else None
        cells = []
        for model in cmp.models:
            mine = frame[(frame.row == label) & (frame.model == model)]
            answered = mine[mine.error_class.isna()]
            call = answered.iloc[0] if len(answered) else (mine.iloc[0] if len(mine) else None)
            cells.append(self._cell(model, call, first))
        # each answer between blank lines, so the front end renders it as markdown inside the table cell
        body = "\n\n</div></td><td style='vertical-align:top'><div style='" + BOX + "'>\n\n"
        return (
            f"{title}<table class='coffee-nb-answers'><tr>{heads}</tr>"
            f"<tr><td style='vertical-align:top'><div style='{BOX}'>\n\n"
            + body.join(cells)
            + "\n\n</div></td></tr>"
            + "<tr>"
            + "".join(
                f"<td style='font-size:smaller;opacity:.75'>{_no_dollars(_footer(frame, label, m))}</td>"
                for m in cmp.models
            )
            + "</tr></table>"
        )

    def _cell(self, model: str, call: Any, first: Any) -> str:
        if call is None:
            return "<i>no answer</i>"
        if isinstance(call.error_class, str):
            error = f"✖ {html.escape(call.error_class)}: {_one_block(html.escape(str(call.error)))}"
            return f"<i style='color:#c62828'>{_no_dollars(error)}</i>"
        text = str(call.answer)
        if not self.diff:
            return _markdown_safe(text)
        if model == self.comparison.models[0] or not isinstance(first, str):
            marked = html.escape(text)
        else:
            marked = marked_diff(first, text)
        return f"<div style='white-space:pre-wrap'>{_no_dollars(_one_block(marked))}</div>"


def _no_dollars(fragment: str) -> str:
    """HTML of ours with ``$`` as an entity: the front end takes text between two dollar signs for LaTeX
    before it reads the HTML, so "$0.01 ... $4.99" around our tags would come out as escaped markup.
    (Inside an answer a blank line closes any dollar left open: answers keep theirs, as in %%llm.)"""
    return fragment.replace("$", "&#36;")


def _markdown_safe(text: str) -> str:
    """An answer as markdown inside the table: no line may start a new HTML block that closes ours."""
    return re.sub(r"(?im)^(\s*)</(div|td|tr|table)>", r"\1&lt;/\2&gt;", text.strip()) or "<i>(empty)</i>"


def _one_block(fragment: str) -> str:
    """HTML that stays one block: a blank line would end it, so line breaks become ``<br>``."""
    return fragment.replace("\r", "").replace("\n", "<br>")


def marked_diff(base: str, other: str) -> str:
    """``other`` as HTML with the words not in ``base`` (inserted or changed) marked, the rest plain."""
    a, b = _WORDS.findall(base), _WORDS.findall(other)
    out = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        chunk = html.escape("".join(b[j1:j2]))
        out.append(chunk if op == "equal" or not chunk.strip() else f"<mark>{chunk}</mark>")
    return "".join(out)


def _footer(frame: Any, label: Any, model: str) -> str:
    mine = frame[(frame.row == label) & (frame.model == model) & frame.error_class.isna()]
    if not len(mine):
        return ""
    c = mine.iloc[0]
    ttft = f" · ttft {c.ttft_s:.2f} s" if c.ttft_s == c.ttft_s else ""  # NaN: not streamed, or cached
    latency = f" · {c.latency_s:.2f} s" if c.latency_s == c.latency_s else ""
    cost = "$0 (cache hit)" if c.cache_hit else _cost(c.cost, c.price_source)
    runs = f" · run 1 of {len(frame[(frame.row == label) & (frame.model == model)])}" if len(mine) > 1 else ""
    return html.escape(f"{c.input_tokens}→{c.output_tokens} tokens · {cost}{latency}{ttft}{runs}")


def _cost(cost: Any, source: str = "") -> str:
    if not isinstance(cost, Decimal):
        return "unpriced"
    return money(cost) + (" (sandbox prices)" if source == "sandbox" else "")


def _seconds(p50: Any, p95: Any) -> str:
    if p50 is None or p50 != p50:
        return "–"
    return f"{p50:.2f} / {p95:.2f} s"


def _header(cmp: Comparison) -> str:
    what = f"template over {len(cmp.answers)} rows" if cmp.over else "prompt"
    runs = f" × {cmp.runs} runs" if cmp.runs > 1 else ""
    source = _one_block(html.escape(cmp.source if len(cmp.source) <= 400 else cmp.source[:400] + "…"))
    return (
        f"<p><b>coffee_nb compare</b> · {len(cmp.models)} models{runs} · {html.escape(cmp.projection.line())}"
        f" · spent <b>{_cost(cmp.cost)}</b>{html.escape(_judge_share(cmp))}</p>"
        f"<blockquote style='opacity:.8'><small>{what}:</small> {source}</blockquote>"
    )


def _judge_share(cmp: Comparison) -> str:
    """What of the spend was the judge's (its calls are not the compared models')."""
    return "" if cmp.judge is None else f" (judge {_cost(cmp.judge.cost)})"


def _rows(
    columns: Sequence[str], rows: Sequence[Sequence[str]], cls: str, caption: str = ""
) -> str:  # one line: no blank line may split the block
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{v}</td>" for v in r) + "</tr>" for r in rows)
    cap = f"<caption style='text-align:left'><b>{caption}</b></caption>" if caption else ""
    return f"<table class='{cls}'>{cap}<tr>{head}</tr>{body}</table>"


def metrics_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """The models × metrics table as text cells (shared by the HTML and the plain-text views); with a
    judge, a last row for the judge's own calls."""
    s = cmp.summary
    columns = ["model", "calls", "errors", "tokens in→out", "cost", "latency p50 / p95", "ttft p50 / p95"]
    judge = cmp.judge
    if judge is not None:
        columns.append("judge: wins / ties / losses" if "wins" in s.columns else "judge: mean score")
    rows = []
    for model, r in s.iterrows():
        row = _usage_cells(str(model), r)
        if judge is not None:
            if "wins" in s.columns:
                row.append(f"{r['wins']} / {r['ties']} / {r['losses']}")
            else:
                row.append("–" if r["score"] is None or r["score"] != r["score"] else f"{r['score']:.1f}")
        rows.append(row)
    if judge is not None:
        agreed = f"orders agreed {judge.agreed} / {judge.read_both}" if judge.order == "both" else "one order per pair"
        rows.append([*_usage_cells(f"{judge.model} (judge)", judge.usage), agreed])
    return columns, rows


def _usage_cells(label: str, r: Any) -> list[str]:
    errors = str(r["errors"]) + (f" ({r['error_classes']})" if r["error_classes"] else "")
    return [
        label,
        str(r["calls"]) + (f" ({r['cached']} cached)" if r["cached"] else ""),
        errors,
        f"{r['input_tokens']}→{r['output_tokens']}",
        _cost(r["cost"]),
        _seconds(r["latency_p50"], r["latency_p95"]),
        _seconds(r["ttft_p50"], r["ttft_p95"]),
    ]


def metrics_html(cmp: Comparison) -> str:
    columns, rows = metrics_rows(cmp)
    escaped = [[html.escape(v) for v in r] for r in rows]
    note = f"per model, over {'every row and ' if cmp.over else ''}{cmp.runs} run{'s' if cmp.runs > 1 else ''}"
    return _rows(columns, escaped, "coffee-nb-compare-metrics", f"Metrics <small>({note})</small>")


def judge_html(cmp: Comparison, limit: int = 20) -> str:
    judge = cmp.judge
    assert judge is not None
    both = judge.order == "both"
    rows = []
    for r in judge.frame.head(limit).itertuples():
        if judge.mode == "pick":
            verdict = "–" if not isinstance(r.winner, str) else r.winner
            if both and r.consistent is False:
                verdict = "tie (orders disagree)"
        else:
            verdict = f"{_score(r.score_a)} : {_score(r.score_b)}"
        why = r.reason if isinstance(r.reason, str) else (r.error if isinstance(r.error, str) else "")
        first = ({True: "agree", False: "disagree"}.get(r.consistent, "–"),) if both else (str(r.shown_first),)
        rows.append([str(r.row), f"{r.model_a} vs {r.model_b}", *first, verdict, why[:200]])
    scores = "scores (mean of both orders)" if both else "scores"
    columns = [
        "row",
        "pair",
        "orders" if both else "shown first",
        "winner" if judge.mode == "pick" else scores,
        "reason",
    ]
    caption = (
        f"Judge {html.escape(judge.model)} ({judge.mode}, {html.escape(judge.consistency_line())})"
        f" · {judge.usage['calls']} calls · cost {_cost(judge.cost)}"
    )
    more = (
        f"<p><i>… {len(judge.frame) - limit} more in <code>.judge.frame</code></i></p>"
        if len(judge.frame) > limit
        else ""
    )
    return _rows(columns, [[html.escape(v) for v in r] for r in rows], "coffee-nb-compare-judge", caption) + more


def _score(value: Any) -> str:
    return "?" if value is None or value != value else f"{value:g}"


def text_summary(cmp: Comparison) -> str:
    """The plain-text twin: one line about the comparison, then the models × metrics table."""
    columns, rows = metrics_rows(cmp)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    runs = f" × {cmp.runs} runs" if cmp.runs > 1 else ""
    over = f" over {len(cmp.answers)} rows" if cmp.over else ""
    spent = f"spent {_cost(cmp.cost)}{_judge_share(cmp)}"
    out = [f"coffee_nb comparison: {len(cmp.models)} models{runs}{over} · {spent}", line(columns)]
    out += [line(r) for r in rows]
    judge = cmp.judge
    if judge is not None:
        out.append(
            f"judge {judge.model} ({judge.mode}, {judge.consistency_line()}): {len(judge.frame)} verdicts from "
            f"{judge.usage['calls']} calls · cost {_cost(judge.cost)}"
        )
    return "\n".join(out)
