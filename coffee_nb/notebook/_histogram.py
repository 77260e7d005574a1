"""The latency histogram's numbers (bins per model, p50/p95) and its figure, rendered to PNG.

Matplotlib's Agg canvas, no pyplot state: a redraw runs on any thread (under one lock, as matplotlib's
text layout is not thread-safe) and the PNG goes into the view's HTML as a data URI.
"""

from __future__ import annotations

import io
import math
import threading
from typing import Any

__all__ = ["EMPTY", "build_figure", "histogram_data", "render_png"]

MPL_LOCK = threading.Lock()
EMPTY: dict[str, Any] = {"models": {}, "count": 0, "p50": None, "p95": None, "edges": None, "log": False}
WIDTH_PX, HEIGHT_PX, DPI = 760, 300, 100
FONT = 10


def histogram_data(by_model: dict[str, Any], max_bins: int) -> dict[str, Any]:
    """Per model the histogram counts over shared bin edges, with p50/p95 of all values."""
    import numpy as np  # lazy: numpy

    values = np.concatenate(list(by_model.values())) if by_model else np.empty(0)
    if not len(values):
        return dict(EMPTY)
    # np.min, not values.min(): mypy at python_version 3.11 misreads numpy >= 2.5's ndarray.min() (3.12 syntax)
    lo, hi = float(np.min(values)), float(np.max(values))
    log = lo > 0 and hi / lo > 100  # wide ranges read better on a log axis
    n_bins = int(min(max_bins, max(1, math.ceil(math.sqrt(len(values))))))
    if hi == lo:
        edges = np.array([lo * 0.9, lo * 1.1 + 1e-9])
    elif log:
        edges = np.logspace(math.log10(lo), math.log10(hi), n_bins + 1)
        edges[0], edges[-1] = lo, hi  # exact ends: rounding must not drop the extremes
    else:
        edges = np.linspace(lo, hi, n_bins + 1)
    models = {m: np.histogram(v, bins=edges)[0] for m, v in by_model.items()}
    p50, p95 = np.percentile(values, [50, 95])
    return {"models": models, "count": len(values), "p50": float(p50), "p95": float(p95), "edges": edges, "log": log}


def _axis_fraction(value: float, lo: float, hi: float, log: bool) -> float:
    if hi <= lo:
        return 0.5
    if log and lo > 0 and value > 0:
        return (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return (value - lo) / (hi - lo)


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def render_png(d: dict[str, Any], what: str, empty_note: str = "no answered calls yet") -> bytes:
    """The figure of ``histogram_data``'s ``d``: stacked bars per model, p50/p95 marked, integer counts."""
    with MPL_LOCK:
        return _render(d, what, empty_note)


def _render(d: dict[str, Any], what: str, empty_note: str) -> bytes:
    fig = build_figure(d, what, empty_note)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def build_figure(d: dict[str, Any], what: str, empty_note: str = "no answered calls yet") -> Any:
    """The matplotlib Figure (Agg canvas) ``render_png`` saves; call it under ``MPL_LOCK`` off the main thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.96, bottom=0.17)  # tight_layout costs more than the plot
    ax = fig.add_subplot(1, 1, 1)
    if d["count"]:
        edges = d["edges"]
        baseline: Any = 0
        for model, counts in d["models"].items():  # stacked, one artist per model
            top = counts + baseline
            ax.stairs(top, edges, baseline=baseline, fill=True, alpha=0.8, label=model)
            baseline = top
        ymax = float(baseline.max()) if hasattr(baseline, "max") else 1.0
        ax.set_ylim(0, max(ymax, 1) * 1.3)  # head room for the p50/p95 labels
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of calls: 0, 1, 2, never 0.2
        if d.get("log"):
            ax.set_xscale("log")
        lo, hi = (float(v) for v in ax.get_xlim())
        x50 = _axis_fraction(d["p50"], lo, hi, bool(d.get("log")))
        x95 = _axis_fraction(d["p95"], lo, hi, bool(d.get("log")))
        # p50 to the left of its line, p95 to the right of its own: they point away from each other, so
        # they can't overlap (one call: p50 = p95). Near an edge a label turns inward, a row lower.
        p95_side = "left" if x95 < 0.8 else "right"
        p50_side = "right" if x50 > 0.2 else "left"
        apart = p50_side == "right" and p95_side == "left"
        trans = ax.get_xaxis_transform()
        box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
        for q, value, style, side, y in (
            ("p50", d["p50"], "--", p50_side, 0.93 if apart or x95 - x50 > 0.35 else 0.8),
            ("p95", d["p95"], ":", p95_side, 0.93),
        ):
            ax.axvline(value, color="black", linestyle=style, linewidth=1.2)
            ax.annotate(
                f"{q} {_seconds(value)}", xy=(value, y), xycoords=trans, xytext=(5 if side == "left" else -5, 0),
                textcoords="offset points", fontsize=FONT, ha=side, va="top", bbox=box,
            )  # fmt: skip
        if len(d["models"]) > 1:
            ax.legend(fontsize=FONT - 1, loc="center right", framealpha=0.85)
    else:
        ax.text(0.5, 0.5, empty_note, ha="center", va="center", transform=ax.transAxes, fontsize=FONT, wrap=True)
        ax.set_yticks([])
    ax.set_xlabel(f"{what} (s)", fontsize=FONT + 1)
    ax.set_ylabel("calls", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    return fig
