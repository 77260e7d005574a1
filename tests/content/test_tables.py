"""DataFrames, Series and arrays rendered for a prompt: what the text says, and that it fits its limit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_nb.content._tables import DEFAULT_CONTEXT_TOKENS, MIN_ROWS, Rendered, is_table, render_table
from coffee_nb.errors._errors import ConfigError
from coffee_nb.pricing._tokens import count_tokens


def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": ["Oslo", "Lima", None],
            "temp": [-3.5, 1 / 3, np.nan],
            "rain": [True, False, True],
            "n": [1, 20, 300],
        }
    )


def frame(rows: int, cols: int, seed: int = 0) -> pd.DataFrame:
    """Mixed dtypes, some missing values, long and awkward text."""
    rng = np.random.default_rng(seed)
    kinds = [
        lambda: rng.normal(0, 1e3, rows),
        lambda: rng.integers(-(10**9), 10**9, rows),
        lambda: rng.choice(np.array(["a", "b|c", "line\nbreak", "x" * 120, None], dtype=object), rows),
        lambda: pd.date_range("2024-01-01", periods=rows, freq="h"),
        lambda: rng.random(rows) < 0.5,
    ]
    return pd.DataFrame({f"col_{j}": kinds[j % len(kinds)]() for j in range(cols)}, index=pd.RangeIndex(rows))


def data_lines(text: str) -> list[str]:
    """The pipe table's data rows (not its header, rule or gap)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [line for line in lines[2:] if line != "| ... |"]


def check(rendered: Rendered, max_tokens: int, encoding: str = "o200k_base") -> None:
    assert rendered.tokens == count_tokens(rendered.text, encoding) <= max_tokens


def test_a_small_frame_exactly():
    df = small()
    text = str(df.dtypes["city"])  # str on pandas 3, object before
    r = render_table(df)
    assert r.text == (
        "DataFrame: 3 rows x 4 columns\n"
        f"Columns: city ({text}), temp (float64), rain (bool), n (int64)\n"
        "| city | temp | rain | n |\n"
        "|---|---|---|---|\n"
        "| Oslo | -3.5 | True | 1 |\n"
        "| Lima | 0.333333 | False | 20 |\n"
        "| NaN | NaN | True | 300 |"
    )
    assert r[2:] == (3, 3, 4, 4, False)
    check(r, DEFAULT_CONTEXT_TOKENS)


def test_shape_and_dtypes_lines():
    df = frame(10_000, 5)
    lines = render_table(df).text.splitlines()
    assert lines[0] == "DataFrame: 10,000 rows x 5 columns"
    assert lines[1] == "Columns: " + ", ".join(f"{name} ({dtype})" for name, dtype in df.dtypes.items())
    assert lines[1].startswith("Columns: col_0 (float64), col_1 (int64), col_2 (")
    assert "col_3 (datetime64[" in lines[1] and lines[1].endswith("col_4 (bool)")


def test_rows_cut_to_head_and_tail_with_a_note():
    df = pd.DataFrame({"i": range(10_000)})
    r = render_table(df, max_tokens=200)
    check(r, 200)
    assert r.truncated and r.rows_total == 10_000 and 0 < r.rows_shown < 10_000
    head, tail = (r.rows_shown + 1) // 2, r.rows_shown // 2
    assert r.text.splitlines()[-1] == (f"(showing {r.rows_shown} of 10,000 rows: the first {head} and the last {tail})")
    shown = [int(line.strip("| ")) for line in data_lines(r.text)]
    assert shown == [*range(head), *range(10_000 - tail, 10_000)]
    assert "| ... |" in r.text


def test_columns_cut_with_a_note_naming_how_many():
    df = frame(50, 200)
    r = render_table(df, max_tokens=1500)
    check(r, 1500)
    assert r.cols_total == 200 and 0 < r.cols_shown < 200 and r.truncated
    left = 200 - r.cols_shown
    assert f"Columns (the first {r.cols_shown} of 200; {left} more not shown): col_0 (float64)," in r.text
    assert r.rows_shown >= MIN_ROWS  # columns give way to rows, down to MIN_ROWS
    assert all(line.count(" | ") == r.cols_shown - 1 for line in data_lines(r.text))


def test_more_tokens_show_more():
    df = frame(1000, 8)
    small_r, large_r = render_table(df, max_tokens=600), render_table(df, max_tokens=6000)
    assert small_r.rows_shown < large_r.rows_shown and large_r.tokens > 3000


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(0, 400),
    cols=st.integers(0, 40),
    limit=st.integers(1, 3000),
    mode=st.sampled_from(["table", "describe"]),
    seed=st.integers(0, 3),
)
def test_any_frame_fits_any_limit_or_says_the_minimum(rows, cols, limit, mode, seed):
    df = frame(rows, cols, seed)
    try:
        r = render_table(df, max_tokens=limit, mode=mode)
    except ConfigError as exc:
        minimum = int(str(exc).rsplit(">= ", 1)[1])
        # a header needs few tokens (a summary's, one column's statistics): every limit from 300 up works
        assert limit < minimum <= (120 if mode == "table" else 300)
        check(render_table(df, max_tokens=minimum, mode=mode), minimum)
        return
    check(r, limit)
    assert (r.rows_total, r.cols_total) == (rows, cols)
    if mode == "table":
        assert len(data_lines(r.text)) == r.rows_shown
        assert r.truncated == (cols > 0 and (r.rows_shown < rows or r.cols_shown < cols))  # no columns: no cells


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_a_million_rows_stay_within_the_limit(encoding):
    n = 1_000_000
    df = pd.DataFrame({f"c{j}": np.arange(n) * (j + 0.5) if j % 2 else np.arange(n) for j in range(20)})
    r = render_table(df, max_tokens=2000, encoding=encoding)
    check(r, 2000, encoding)
    assert r.text.startswith("DataFrame: 1,000,000 rows x 20 columns\n")
    assert r.rows_total == n and r.rows_shown >= MIN_ROWS and "| 999999 |" in r.text


def test_long_cells_pipes_and_newlines_stay_in_one_cell():
    df = pd.DataFrame({"text": ["a|b\nc\r\nd", "x" * 200], "n": [1, 2]})
    lines = render_table(df).text.splitlines()
    assert lines[4] == "| a\\|b\\nc\\nd | 1 |"
    assert lines[5] == f"| {'x' * 79}… | 2 |"
    assert render_table(df, mode="describe").text.count("\n") == 5  # the summary rows are single lines too


def test_missing_values_read_alike_and_floats_are_compact():
    df = pd.DataFrame(
        {
            "f": [np.nan, 1.0, 1234567.891],
            "o": [None, "x", np.nan],
            "t": pd.to_datetime([None, "2024-01-02", "2024-01-03"]),
            "i": pd.array([None, 1, 2], dtype="Int64"),
            "small": [1e-7, 2.5, -0.0],
        }
    )
    rows = data_lines(render_table(df).text)
    assert rows[0] == "| NaN | NaN | NaN | NaN | 1e-07 |"
    assert rows[2] == "| 1234568 | NaN | 2024-01-03 00:00:00 | 2 | 0 |"


def test_an_index_that_says_something_is_shown():
    df = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", "b"], name="key"))
    text = render_table(df).text
    assert f"Index: key ({df.index.dtype})" in text
    assert "| key | v |" in text and "| a | 1 |" in text
    assert "Index" not in render_table(df.reset_index(drop=True)).text
    multi = df.set_index(pd.MultiIndex.from_tuples([("x", 1), ("y", 2)], names=["k", "j"]))
    assert "| k/j | v |\n|---|---|\n| x/1 | 1 |" in render_table(multi).text


def test_a_series_is_a_one_column_table():
    s = pd.Series(np.arange(1000) / 4, name="price")
    r = render_table(s, max_tokens=150)
    check(r, 150)
    lines = r.text.splitlines()
    assert lines[0] == "Series 'price': 1,000 rows, dtype float64" and lines[1] == "| price |"
    assert (r.cols_shown, r.cols_total, r.rows_total) == (1, 1, 1000) and r.truncated
    assert lines[-1].startswith(f"(showing {r.rows_shown} of 1,000 rows: the first ")
    unnamed = pd.Series([1, 2], index=["a", "b"])
    lines = render_table(unnamed).text.splitlines()
    assert lines[:3] == ["Series: 2 rows, dtype int64", f"Index: {unnamed.index.dtype}", "|  | value |"]


def test_arrays_of_one_and_two_dimensions_are_tables():
    one = render_table(np.arange(5, dtype=np.int32))
    assert one.text.splitlines()[:3] == ["ndarray: 5 values, dtype int32", "| value |", "|---|"]
    assert data_lines(one.text)[-1] == "| 4 |" and not one.truncated
    two = render_table(np.arange(6.0).reshape(2, 3))
    assert two.text.splitlines() == [
        "ndarray: 2 rows x 3 columns, dtype float64",
        "| 0 | 1 | 2 |",
        "|---|---|---|",
        "| 0 | 1 | 2 |",
        "| 3 | 4 | 5 |",
    ]
    wide = render_table(np.zeros((100, 300)), max_tokens=500)
    check(wide, 500)
    assert f"Columns: the first {wide.cols_shown} of 300; {300 - wide.cols_shown} more not shown" in wide.text


def test_other_arrays_show_shape_dtype_and_leading_values():
    cube = np.arange(1000.0).reshape(10, 10, 10)
    r = render_table(cube, max_tokens=60)
    check(r, 60)
    lines = r.text.splitlines()
    assert lines[0] == "ndarray: shape (10, 10, 10), dtype float64 (1,000 values)"
    assert lines[1].startswith("First values, in C order: 0, 1, 2, ")
    assert lines[2] == f"(showing {r.rows_shown} of 1,000 values)" and 0 < r.rows_shown < 1000
    assert render_table(np.arange(8).reshape(2, 2, 2)).text.endswith("\nValues, in C order: 0, 1, 2, 3, 4, 5, 6, 7")
    assert render_table(np.array(5)).text == "ndarray: shape (), dtype int64 (1 value)\nValues, in C order: 5"
    described = render_table(cube, mode="describe").text
    assert described.splitlines()[1] == "Values: min 0, max 999, mean 499.5, std 288.675"


def test_describe_mode_summarises_each_column():
    df = small()
    r = render_table(df, mode="describe")
    check(r, DEFAULT_CONTEXT_TOKENS)
    lines = r.text.splitlines()
    assert lines[0] == "DataFrame: 3 rows x 4 columns"
    assert lines[2] == "| column | dtype | nulls | unique | top | freq | mean | std | min | 25% | 50% | 75% | max |"
    assert lines[4].startswith(f"| city | {df.dtypes['city']} | 1 | 2 | ")
    temp = "| temp | float64 | 1 |  |  |  | -1.58333 | 2.71058 | -3.5 | -2.54167 | -1.58333 | -0.625 | 0.333333 |"
    assert lines[5] == temp
    assert (r.rows_shown, r.rows_total, r.cols_shown, r.cols_total, r.truncated) == (0, 3, 4, 4, False)
    wide = render_table(frame(20, 300), mode="describe", max_tokens=800)
    check(wide, 800)
    assert wide.truncated and wide.text.endswith(
        f"(summary of the first {wide.cols_shown} of 300 columns; {300 - wide.cols_shown} more not shown)"
    )
    lists = pd.DataFrame({"l": [[1], [2, 3]], "n": [1, 2]})  # unhashable cells: describe() can't, nulls still
    assert "| n | int64 | 0 |" in render_table(lists, mode="describe").text


def test_empty_frames():
    assert render_table(pd.DataFrame()).text == "DataFrame: 0 rows x 0 columns\n(no columns)"
    empty = render_table(pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    assert empty.text == "DataFrame: 0 rows x 1 column\nColumns: a (int64)\n| a |\n|---|\n(no rows)"
    assert empty[2:] == (0, 0, 1, 1, False)
    assert render_table(pd.DataFrame(), mode="describe").text == "DataFrame: 0 rows x 0 columns\n(no columns)"
    assert render_table(np.zeros((2, 0, 3))).text.endswith("(0 values)\n(no values)")


def test_a_limit_below_the_header_says_the_minimum():
    df = frame(100, 10)
    with pytest.raises(ConfigError, match=r"max_tokens=10 is too small to render this DataFrame.*>= (\d+)") as exc:
        render_table(df, max_tokens=10)
    minimum = int(str(exc.value).rsplit(">= ", 1)[1])
    r = render_table(df, max_tokens=minimum)
    check(r, minimum)
    assert (r.rows_shown, r.cols_shown) == (0, 1)
    with pytest.raises(ConfigError, match="too small"):
        render_table(np.zeros((3, 3, 3)), max_tokens=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"max_tokens": 1.5}, "max_tokens must be a positive integer"),
        ({"mode": "rows"}, "mode must be one of 'table', 'describe'"),
        ({"encoding": ""}, "encoding must be a non-empty string"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        render_table(small(), **kwargs)


def test_is_table():
    assert is_table(small()) and is_table(small()["n"]) and is_table(np.zeros(3)) and is_table(np.array(1))
    for other in ([1, 2], {"a": 1}, "text", 3.5, np.float64(1.0), small().index, None):
        assert not is_table(other)
    with pytest.raises(TypeError, match="not list"):
        render_table([1, 2])


def test_recognising_imports_neither_pandas_nor_numpy():
    code = (
        "import sys\n"
        "from coffee_nb.content._tables import is_table\n"
        "assert not is_table([1]) and not is_table('x')\n"
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_a_whole_row_in_map_rows_is_sent_as_a_table():
    import coffee_nb
    from coffee_nb.testing import ScriptedChatModel

    model = ScriptedChatModel(model_name="reader", script=["ok"])
    df = pd.DataFrame({"Ticket text": ["refund | please\nsoon"], "score": [float("nan")]})
    coffee_nb.map_rows(df, "Classify: {row}", models=[model], progress=False, cache=False)
    (call,) = model.calls
    sent = call["messages"][-1].content
    assert sent.startswith("Classify: | column | value |\n|---|---|\n")
    assert "| Ticket text | refund \\| please\\nsoon |" in sent and "| score | NaN |" in sent
