"""What ``compare`` returns: :class:`Comparison` (one frame of calls, a models × metrics summary, the
answers side by side, the judge's report), and :class:`Call`, one request and its outcome, which
they are made of; and how what ``compare`` is given is read and checked. No I/O here; pandas loads
when a comparison is built.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from coffee_nb._shared._validate import usd
from coffee_nb.budget import Budget
from coffee_nb.comparison._judge import JudgeReport
from coffee_nb.comparison._usage import USAGE_COLUMNS, usage
from coffee_nb.comparison._view import CompareView, text_summary
from coffee_nb.errors._errors import ConfigError
from coffee_nb.session._interpolate import Prompt, Row, interpolate, prompt_text

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb._shared._records import CallRecord
    from coffee_nb.comparison._projection import Projection
    from coffee_nb.invoke._summary import CallSummary
    from coffee_nb.session._session import Session

__all__ = ["FRAME_COLUMNS", "Call", "Comparison", "cap_budget", "model_list", "name_of", "read_prompts"]

FRAME_COLUMNS = [
    "row",
    "run",
    "model",
    "answer",
    "error_class",
    "error",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cost",
    "price_source",
    "latency_s",
    "ttft_s",
    "cache_hit",
    "call_id",
]


@dataclass(slots=True, eq=False)
class Call:
    """One request of a comparison (an answer, or a judge's verdict on a pair) and, once made, its outcome.

    The numbers are those of its CallRecords: tokens, price source and latencies of the attempt that
    answered, the cost of every attempt. A cached answer costs $0 and keeps the latencies measured when
    it was fetched."""

    model: str
    picker: Any
    messages: list[Any]
    key: str | None
    kwargs: dict[str, Any]
    row: Any = 0
    run: int = 1
    hit: tuple[Any, dict[str, Any]] | None = None  # (message, stored meta) found in the cache before the run
    pair: tuple[str, str] | None = None  # a verdict: the two models, in the comparison's order
    shown: tuple[str, str] | None = None  # ... and in the order the judge saw them
    answer: str | None = None
    error_class: str | None = None
    error: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | None = None
    price_source: str = "unpriced"
    latency_s: float | None = None
    ttft_s: float | None = None
    cache_hit: bool = False
    call_id: str | None = None
    verdict: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.error_class is None

    def answered(self, text: str, summary: CallSummary | None) -> None:
        self.answer = text
        if summary is None:
            self.attempts = 0
            return
        attempts = summary.attempts
        self.attempts = len(attempts)
        final = attempts[-1]
        self.cache_hit = summary.replayed  # answered from a cassette: no model called, nothing spent
        self.input_tokens, self.output_tokens = summary.tokens.input, summary.tokens.output
        self.price_source, self.call_id = summary.price_source, summary.call_id
        self.latency_s, self.ttft_s = final.latency_s, summary.ttft_s
        self.cost = summary.total_cost

    def failed(self, records: Sequence[CallRecord], message: str, error_class: str | None = None) -> None:
        last = next((r for r in reversed(records) if r.error_class), None)
        self.error_class = error_class or (last.error_class if last is not None else None) or "error"
        # the records' messages are redacted when made; an exception's first line says what happened otherwise
        self.error = (last.error_message if last is not None else None) or (message.splitlines() or [""])[0]
        self.attempts = len(records)
        self.cost = sum((r.cost for r in records if r.cost is not None), Decimal(0))  # errors are not billed
        self.call_id = records[-1].call_id if records else None

    def replayed(self, text: str, record: CallRecord, stored: Mapping[str, Any]) -> None:
        self.answer, self.cache_hit, self.attempts = text, True, 0
        self.input_tokens, self.output_tokens = record.input_tokens, record.output_tokens
        self.cost, self.price_source, self.call_id = record.cost, record.price_source, record.call_id
        self.latency_s, self.ttft_s = _seconds(stored.get("latency_s")), _seconds(stored.get("ttft_s"))


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Comparison:
    """The answers of several models to the same requests, with the numbers of each call.

    ``frame``: one row per call (row, run, model, answer, error, attempts, tokens, cost as Decimal,
    latency and time to first token of the answering attempt, cache hit, call id). ``summary``: models ×
    metrics (calls, errors, tokens, cost, latency and ttft p50/p95; the judge's standings and, judged
    both ways round, its consistency on each model's pairs). ``answers``: rows × models, the first answer
    of each. ``judge``: a :class:`JudgeReport` (its verdicts, consistency and own cost), or None. ``cost``:
    everything spent, the judge's calls included (``judge.cost`` alone is the judge's).
    """

    def __init__(
        self,
        *,
        source: str,
        over: bool,
        models: Sequence[str],
        runs: int,
        calls: Sequence[Call],
        verdicts: Sequence[Call],
        judge_model: str | None,
        judge_mode: str,
        projection: Projection,
        judge_order: str = "both",
    ) -> None:
        import pandas as pd  # lazy: pandas

        self.source, self.over, self.models, self.runs = source, over, list(models), runs
        self.projection = projection
        frame = pd.DataFrame([{c: getattr(call, c) for c in FRAME_COLUMNS} for call in calls], columns=FRAME_COLUMNS)
        for col in ("latency_s", "ttft_s"):
            frame[col] = frame[col].astype("float64")  # None → NaN
        self.frame = frame
        self.judge: JudgeReport | None = None
        if judge_model is not None:
            self.judge = JudgeReport(judge_model, judge_mode, verdicts, judge_order)
        self.summary = self._summary()
        firsts = frame[frame.error_class.isna()].sort_values("run", kind="stable").drop_duplicates(["row", "model"])
        rows = list(dict.fromkeys(frame.row))
        self.answers = firsts.pivot(index="row", columns="model", values="answer").reindex(index=rows, columns=models)

    def _summary(self) -> pd.DataFrame:
        import pandas as pd  # lazy: pandas

        out = [usage(self.frame[self.frame.model == m]) for m in self.models]
        summary = pd.DataFrame(out, index=pd.Index(self.models, name="model"), columns=USAGE_COLUMNS)
        if self.judge is not None:
            summary = summary.join(self.judge.standings(self.models).drop(columns="judged"))
        return summary

    @property
    def cost(self) -> Decimal | None:
        """Everything this comparison spent (the judge included); None when an answer was unpriced."""
        costs = [*self.summary.cost, *([self.judge.cost] if self.judge is not None else [])]
        return None if None in costs else sum(costs, Decimal(0))

    def view(self, *, diff: bool = False, rows: int = 10) -> Any:
        """The display of this comparison (``diff=True`` marks where each answer departs from the first model's)."""
        return CompareView(self, diff=diff, rows=rows)

    def _repr_markdown_(self) -> str:
        return str(self.view()._repr_markdown_())

    def __repr__(self) -> str:
        return text_summary(self)


# -- reading what compare is given ------------------------------------------------------------------
def model_list(models: Any) -> list[Any]:
    """The models to compare, from a list or a comma-separated string; an AutoPicker is not one model."""
    from coffee_nb.invoke._invoker import AutoPicker  # lazy: langchain_core

    if isinstance(models, str):
        items: list[Any] = [m.strip() for m in models.split(",") if m.strip()]
    elif isinstance(models, Sequence):
        items = list(models)
    else:
        raise ConfigError(f"models must be a list of models, e.g. ['sandbox/fast', 'sandbox/smart'], got {models!r}")
    if not items:
        raise ConfigError("compare needs at least one model, e.g. ['sandbox/fast', 'sandbox/smart']")
    for item in items:
        if isinstance(item, AutoPicker):
            raise ConfigError("each column of a comparison is one model: give model specs, not an AutoPicker")
    return items


def name_of(session: Session, spec: Any) -> str:
    """The column name of ``spec``: its name in the chain (``provider/model``, or ModelSpec's ``name``)."""
    return str(session.picker([spec]).model_names[0])


def cap_budget(budget: Any) -> Any:
    """None, a Budget (anything with reserve/commit/release), or an amount: a hard cap for this comparison."""
    if budget is None or all(callable(getattr(budget, m, None)) for m in ("reserve", "commit", "release")):
        return budget
    return Budget(total=usd("budget", budget), ledger="memory", name="compare")


def read_prompts(
    source: Any, template: str | None, namespace: Mapping[str, Any], *, context_tokens: int | None = None
) -> list[tuple[Any, Prompt]]:
    """(row label, prompt) pairs: one for a prompt (label 0: text, or content blocks with images), one per
    row for a DataFrame and a template."""
    if isinstance(source, (str, list)):
        if template is not None:
            raise ConfigError("template= goes with a DataFrame; for one prompt, pass the prompt itself")
        if not prompt_text(source).strip():
            raise ConfigError("the prompt is empty")
        return [(0, source)]
    if not hasattr(source, "to_dict") or not hasattr(source, "index"):
        raise ConfigError(f"compare takes a prompt or a pandas DataFrame (with template=), got {type(source).__name__}")
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("comparing over a DataFrame needs template=, e.g. 'Summarise: {text}'")
    if len(source) == 0:
        raise ConfigError("the DataFrame has no rows")
    variables = cast("MutableMapping[str, Any]", namespace)  # only read
    out = []
    for label, values in zip(source.index, source.to_dict("records"), strict=True):
        columns = {str(k): v for k, v in values.items()}
        scope = ChainMap(columns, {"row": Row(columns)}, variables)
        prompt, missing = interpolate(template, scope, context_tokens=context_tokens)
        if missing:  # field names, or (field, why) pairs
            why = "names neither a column nor a variable"
            fields = "; ".join(f"{{{getattr(m, 'field', m)}}} {getattr(m, 'reason', why)}" for m in missing)
            raise ConfigError(
                f"template field {fields}. Columns: {list(columns)[:12]}. Write {{{{name}}}} for a literal {{name}}."
            )
        out.append((label, prompt))
    return out
