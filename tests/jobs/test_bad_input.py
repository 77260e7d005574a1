"""Bad input to map_rows: a clear error naming the problem, before any call."""

from __future__ import annotations

import pandas as pd
import pytest

from coffee_nb import ConfigError, sandbox
from coffee_nb.jobs import SamePromptWarning, map_rows


@pytest.fixture(autouse=True)
def _nothing_sent():
    yield
    assert sandbox.attempts() == []  # every case here is refused before a request


FRAME = pd.DataFrame({"text": ["a", "b"], "n": [1, 2]})


@pytest.mark.parametrize(
    ("df", "template", "kwargs", "message"),
    [
        ([{"text": "a"}], "{text}", {}, "needs a pandas (or Dask) DataFrame, got list"),
        (pd.DataFrame({"text": []}), "{text}", {}, "the DataFrame is empty"),
        (FRAME, 42, {}, "the template must be a string"),
        (FRAME, "   ", {}, "the template is empty"),
        (FRAME, "Classify {txt} ({n})", {}, "{txt} names neither a column nor a variable. Columns: 'text', 'n'"),
        (FRAME, "{a} and {b}", {}, "fields {a}, {b} name neither a column nor a variable"),
        (
            FRAME,
            "{text._private}",
            {},
            "template field {text._private} is not read: private attributes are not interpolated",
        ),
        (FRAME, "{text}", {"concurrency": 0}, "concurrency must be a positive whole number of rows in flight, got 0"),
        (FRAME, "{text}", {"concurrency": -3}, "got -3"),
        (FRAME, "{text}", {"concurrency": 2.5}, "got 2.5"),
        (FRAME, "{text}", {"concurrency": True}, "got True"),
        (FRAME, "{text}", {"on_error": "ignore"}, "on_error must be 'record'"),
        (FRAME, "{text}", {"schema": 42}, "schema must be a pydantic model, a JSON schema"),
        (FRAME, "{text}", {"schema": {"label": 3}}, "schema field 'label' needs a type"),
        (FRAME, "{text}", {"schema": {"label": "colour"}}, "unknown type 'colour' for schema field 'label'"),
        (FRAME, "{text}", {"schema": "label"}, "schema text is 'name:type, ...'"),
        (FRAME, "{text}", {"schema": "{not json"}, "the schema is not valid JSON"),
        (FRAME, "{text}", {"schema": {"properties": {}}}, "the JSON schema needs 'properties'"),
        (FRAME, "{text}", {"schema": {"label": str}, "out": "x"}, "out= names the answer column"),
        (FRAME.assign(answer=1), "{text}", {}, "already has column 'answer'"),
        (FRAME.assign(cost=1), "{text}", {}, "already has column 'cost'"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "{a}", {}, "duplicate column names: a"),
        (FRAME, "{text}", {"models": []}, "models must name at least one model"),
        (FRAME, "{text}", {"models": ["nope"]}, "malformed model spec 'nope'"),
        (FRAME, "{text}", {"max_tokens": 0}, "max_tokens"),
        (FRAME, "{text}", {"temperature": 7}, "temperature"),
        (FRAME, "{text}", {"cache": 3}, "cache must be True, False"),
        (FRAME, "{text}", {"progress": "yes"}, "progress must be True, False or a view"),
    ],
)
def test_refused_with_the_problem_named(df, template, kwargs, message):
    with pytest.raises(ConfigError) as info:
        map_rows(df, template, **{"models": ["sandbox/fast"], **kwargs})
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError: plain Python code catches it too


def test_a_template_without_fields_warns_that_every_row_gets_the_same_prompt():
    with pytest.warns(SamePromptWarning, match="every row gets the same prompt"):
        projection = map_rows(FRAME, "Tell me a joke", models=["sandbox/fast"], dry_run=True)
    assert projection.to_call == 2


def test_a_field_from_a_variable_only_also_warns():
    topic = "coffee"
    with pytest.warns(SamePromptWarning):
        map_rows(FRAME, "Tell me about {topic}", models=["sandbox/fast"], dry_run=True)
    del topic
