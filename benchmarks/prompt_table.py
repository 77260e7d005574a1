"""A DataFrame in a prompt: render_table on a 1 M-row, 20-column frame, per token limit and mode.

Prints the median render time, the tokens and the rows and columns shown, then ratios measured side by
side in one run: 1 M rows vs 10 k rows (target about 1: only the shown rows are formatted, so the frame's
length must not matter) and render_table vs ``str(df)`` (what ``{df}`` sent before). Target for the
table mode: well under a second at 1 M rows.

    .venv/bin/python benchmarks/prompt_table.py [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from coffee_nb.content._tables import render_table
from coffee_nb.pricing._tokens import count_tokens

LIMITS = (500, 2000, 8000)


def frame(rows: int) -> pd.DataFrame:
    """20 columns, five each of floats, integers, short text (with missing values) and timestamps."""
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma delta", "a|pipe", None], dtype=object)
    kinds: list[Callable[[], Any]] = [
        lambda: rng.normal(100, 30, rows),
        lambda: rng.integers(0, 10**6, rows),
        lambda: rng.choice(words, rows),
        lambda: pd.date_range("2020-01-01", periods=rows, freq="min"),
    ]
    return pd.DataFrame({f"col_{j}": kinds[j % 4]() for j in range(20)})


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm: the tokenizer's first load, pandas' first slices
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    big, small = frame(args.rows), frame(10_000)
    print(f"\n{args.rows:,} rows x 20 columns, median of {args.repeat}")
    print(f"  {'mode':<9} {'max_tokens':>10} {'ms':>8} {'tokens':>7} {'rows':>5} {'cols':>5}  {'1M/10k':>6}")
    for mode in ("table", "describe"):
        for limit in LIMITS:
            r = render_table(big, max_tokens=limit, mode=mode)
            ms = median_ms(lambda m=mode, lim=limit: render_table(big, max_tokens=lim, mode=m), args.repeat)
            ms_small = median_ms(lambda m=mode, lim=limit: render_table(small, max_tokens=lim, mode=m), args.repeat)
            print(
                f"  {mode:<9} {limit:>10,} {ms:>8.1f} {r.tokens:>7,} {r.rows_shown:>5} {r.cols_shown:>5}"
                f"  {ms / ms_small:>6.2f}"
            )
    table_ms = median_ms(lambda: render_table(big), args.repeat)
    str_ms = median_ms(lambda: str(big), args.repeat)
    text = str(big)
    print(f"\n  str(df): {str_ms:.1f} ms, {count_tokens(text):,} tokens, no dtypes, no limit")
    print(f"  render_table (default {render_table(big).tokens:,} tokens) / str(df) time: {table_ms / str_ms:.2f}")


if __name__ == "__main__":
    main()
