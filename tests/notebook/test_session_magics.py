"""The session's line magics in a real IPython shell against the sandbox: styled tables (%llm_costs,
%llm_history, %llm_config, %llm_models --search), aliases, option spelling, {err} / {Err[n]}, and
undefined fields refused before anything is sent."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import coffee_nb
import coffee_nb.testing
from coffee_nb import sandbox
from coffee_nb._shared._format import money
from coffee_nb.testing import ScriptedChatModel


@pytest.fixture(autouse=True)
def no_aliases():
    from coffee_nb._shared import _config

    _config.ALIASES.reset()
    yield
    _config.ALIASES.reset()


def ask(ip, line, cell="hello"):
    with capture_output():
        ip.run_cell_magic("llm", line, cell)
    return ip.user_ns["_"]


def spent(ip):
    return coffee_nb.get_session().budget.spent("daily")


# -- item 9: tables ----------------------------------------------------------------------------------
def test_costs_keep_numbers_and_show_money_a_total_and_failed_models(ip):
    ask(ip, "sandbox/fast --no-cache", "Say something about coffee")
    sandbox.inject("sandbox/echo", ["auth"])
    ask(ip, "sandbox/echo sandbox/smart --no-cache", "second")  # echo fails, smart answers
    costs = ip.run_line_magic("llm_costs", "")
    assert isinstance(costs, pd.DataFrame)
    assert costs["cost_usd"].dtype == "float64" and costs["calls"].dtype == "int64"  # numbers for your code
    assert pd.isna(costs.loc["sandbox/echo", "cost_usd"])  # the data says "no cost"...
    text = repr(costs)
    echo = next(line for line in text.splitlines() if line.startswith("sandbox/echo"))
    assert "— (failed)" in echo and "nan" not in text.lower()  # ...the display says why
    assert "e-0" not in text and "$0.0000" in text  # money as $0.0000xx, never 3.8e-07
    total = text.splitlines()[-1]
    assert total.startswith("total") and " 3 " in total  # three attempts
    fast, smart = costs.loc["sandbox/fast", "cost_usd"], costs.loc["sandbox/smart", "cost_usd"]
    assert money(coffee_nb.get_session().metrics.snapshot().cost) in total
    assert fast > 0 and smart > 0
    assert list(text.splitlines()[1].split())[-2:] == ["p50", "p95"]  # every column, the last one too
    html = costs._repr_html_()
    assert "mathjax_ignore" in html and "tex2jax_ignore" in html
    assert "$" not in html and "&#36;0.0000" in html  # never typeset as math
    assert "<tfoot>" in html and "total" in html
    derived = costs[["cost_usd"]]
    assert type(derived) is pd.DataFrame  # derived frames are plain DataFrames
    assert costs["cost_usd"].sum() == pytest.approx(fast + smart)


def test_tiny_amounts_show_every_significant_digit():
    from coffee_nb.notebook.tables import usd

    assert usd(3.8e-07) == "$0.00000038"
    assert usd(0.0015) == "$0.0015" and usd(2.0) == "$2.00" and usd(float("nan")) == "—"


def test_history_has_times_to_the_second_and_a_short_prompt(ip):
    ask(ip, "sandbox/fast --no-cache", "A rather long prompt about the history of espresso machines in Italy")
    ask(ip, "sandbox/echo", "short one")
    ask(ip, "sandbox/echo", "short one")  # a cache hit
    history = ip.run_line_magic("llm_history", "2")
    assert len(history) == 2 and str(history["started_at"].dtype) == "datetime64[ns, UTC]"
    assert history["cost_usd"].dtype == "float64"
    assert list(history["prompt"]) == ["short one", "short one"]
    assert bool(history["cache_hit"].iloc[-1])
    full = ip.run_line_magic("llm_history", "")
    first = full["prompt"].iloc[0]
    assert first.startswith("A rather long prompt about") and first.endswith("…") and len(first) <= 30
    text = repr(full)
    lines = text.splitlines()
    day = full["started_at"].iloc[0].tz_convert(dt.datetime.now().astimezone().tzinfo).strftime("%Y-%m-%d")
    assert lines[1].startswith(f"{day} (") and "prompt" in lines[1]  # one day: the date said once, in the header
    clock = lines[3].split()[0]
    assert len(clock) == 8 and clock.count(":") == 2  # HH:MM:SS, no fractions
    assert "$" in lines[3] and "e-0" not in text
    two_days = full.copy()
    two_days.loc[0, "started_at"] -= pd.Timedelta(days=1)
    from coffee_nb.notebook.tables import history_frame

    spread = repr(history_frame(two_days, {}, 10)).splitlines()
    assert spread[1].startswith("started (") and len(spread[3].split()[0] + " " + spread[3].split()[1]) == 19
    with pytest.raises(UsageError, match="number of rows"):
        ip.run_line_magic("llm_history", "lots")


def test_history_prompts_never_show_a_key(ip, monkeypatch):
    secret = "sk-proj-" + "Q" * 40
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    ask(ip, "sandbox/echo --no-cache", f"my key is {secret}")
    history = ip.run_line_magic("llm_history", "")
    assert secret not in repr(history) and secret not in history._repr_html_()
    assert secret not in "".join(history["prompt"])


def test_config_shows_the_ledger_in_words(ip, tmp_path):
    config = ip.run_line_magic("llm_config", f"--ledger {tmp_path / 'spend.db'} --daily 2")
    assert isinstance(config, pd.DataFrame)
    assert config.loc["ledger", "value"] == f"SQLite file {tmp_path / 'spend.db'}"
    assert "SQLiteLedger(" not in repr(config) and "namespace=" not in repr(config)
    assert config.loc["budget", "value"] == "daily $2.00"
    memory = ip.run_line_magic("llm_config", "--ledger memory")
    assert memory.loc["ledger", "value"].startswith("in memory")
    assert "&#36;2.00" in memory._repr_html_()


def test_models_search(ip):
    found = ip.run_line_magic("llm_models", "--search GEMINI")
    assert len(found) >= 1 and all("gemini" in m for m in found.index)
    assert "openai/gpt-4o-mini" not in found.index
    sandbox_rows = ip.run_line_magic("llm_models", "--search sandbox")
    assert "sandbox/fast" in sandbox_rows.index and sandbox_rows.loc["sandbox/fast", "price_source"] == "sandbox"
    none = ip.run_line_magic("llm_models", "--search zzznothing")
    assert len(none) == 0 and "no model, provider or alias holds 'zzznothing'" in repr(none)


# -- item 11: aliases ------------------------------------------------------------------------------------
def test_an_alias_is_usable_wherever_a_spec_is(ip):
    listed = ip.run_line_magic("llm_alias", "fast=sandbox/echo")
    assert listed.loc["fast", "model"] == "sandbox/echo"
    answer = ask(ip, "fast --no-cache", "via an alias")
    assert answer.model == "sandbox/echo" and answer.text == "via an alias"
    ip.run_line_magic("llm_config", "--models fast,sandbox/fast")
    assert ask(ip, "--no-cache", "default chain").model == "sandbox/echo"
    picker = coffee_nb.AutoPicker("fast")
    assert picker.candidates[0].name == "sandbox/echo"
    # redefined: the next cell uses the new model (and never the old one's cached answer)
    ip.run_line_magic("llm_alias", "fast sandbox/smart")
    assert ask(ip, "fast", "via an alias").model == "sandbox/smart"
    models = ip.run_line_magic("llm_models", "--search fast")
    assert models.loc["sandbox/smart", "alias"] == "fast"
    listed = ip.run_line_magic("llm_alias", "--remove fast")
    assert len(listed) == 0 and "no aliases yet" in repr(listed)
    with pytest.raises(UsageError, match="malformed model spec 'fast'"):
        ask(ip, "fast --no-cache", "gone")


def test_bad_aliases_change_nothing(ip):
    ip.run_line_magic("llm_alias", "keep=sandbox/fast")
    with pytest.raises(UsageError, match="unknown provider 'nope'"):
        ip.run_line_magic("llm_alias", "a=sandbox/echo b=nope/x")
    with pytest.raises(UsageError, match="alias name"):
        ip.run_line_magic("llm_alias", "'x/y=sandbox/echo'")
    with pytest.raises(UsageError, match="NAME=provider/model"):
        ip.run_line_magic("llm_alias", "justaname")
    with pytest.raises(UsageError, match=r"no alias 'ghost' \(aliases: keep\)"):
        ip.run_line_magic("llm_alias", "--remove keep ghost")
    from coffee_nb.providers._aliases import aliases

    assert aliases() == {"keep": "sandbox/fast"}  # nothing half-applied


def test_aliases_are_forgotten_by_reset_defaults():
    from coffee_nb._shared import _config
    from coffee_nb.providers._aliases import aliases, set_alias

    with coffee_nb.testing.isolated():
        set_alias("quick", "sandbox/fast")
        assert aliases() == {"quick": "sandbox/fast"}
    assert "quick" not in aliases()
    set_alias("quick", "sandbox/fast")
    _config.reset_defaults()
    assert aliases() == {}


# -- item 10: options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("magic", "line", "suggestion"),
    [
        ("llm", "--temprature 0.5", "--temperature"),
        ("llm", "--no-chache", "--no-cache"),
        ("llm_config", "--dayly 3", "--daily"),
        ("llm_config", "--temprature 0.2", "--temperature"),
        ("llm_models", "--serch gemini", "--search"),
        ("llm_history", "--rows 3", None),
        ("llm_map", "--temprature 1 --over df", "--temperature"),
        ("llm_compare", "sandbox/fast sandbox/echo --rnus 2", "--runs"),
        ("llm_alias", "--rmove x", "--remove"),
        ("llm_reset", "--alll", "--all"),
    ],
)
def test_a_misspelt_option_says_what_was_meant(ip, magic, line, suggestion):
    before = dict(sandbox.server().requests)
    with pytest.raises(UsageError) as info:
        if magic in ("llm", "llm_map", "llm_compare"):
            ip.run_cell_magic(magic, line, "prompt")
        else:
            ip.run_line_magic(magic, line)
    message = str(info.value)
    if suggestion:
        assert f"did you mean {suggestion}?" in message
    else:
        assert "unknown option" in message or "unrecognized" in message or "argument" in message
    assert dict(sandbox.server().requests) == before


def test_quoted_values_lose_their_quotes(ip):
    model = ScriptedChatModel(script=["one", "two"])
    coffee_nb.configure(models=[model])
    with capture_output():
        ip.run_cell_magic("llm", '-o "res" --budget "0.5" --no-stream --no-cache', "hi")
    assert ip.user_ns["res"].text == "one"
    ip.run_line_magic("llm_config", "--system 'Be kind'")
    assert coffee_nb.get_session().system == "Be kind"


def test_a_failing_llm_config_applies_none_of_its_changes(ip):
    ip.run_line_magic("llm_config", "--models sandbox/fast --system before --daily 3 --ledger memory")
    for line in ("--system after --daily lots", "--system after --models nope/x", "--system after --temperature 7"):
        with pytest.raises(UsageError):
            ip.run_line_magic("llm_config", line)
    session = coffee_nb.get_session()
    assert session.system == "before" and session.models == ["sandbox/fast"]
    assert [str(r.amount) for r in session.budget.rules] == ["3"]


# -- undefined fields, {err} / {Err[n]} ----------------------------------------------------------------------
def test_an_undefined_field_is_refused_before_anything_is_sent(ip):
    before, money_before = dict(sandbox.server().requests), spent(ip)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("llm", "sandbox/fast --no-cache", "Summarise {undefined_thing}")
    message = str(info.value)
    assert "{undefined_thing} is not defined here" in message and "nothing was sent" in message
    assert "--allow-missing" in message and "{{undefined_thing}}" in message
    assert dict(sandbox.server().requests) == before and spent(ip) == money_before
    with capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/echo --no-cache --allow-missing", "Summarise {undefined_thing}")
    assert ip.user_ns["_"].text == "Summarise {undefined_thing}"
    assert "{undefined_thing} is not defined here; left as written" in cap.stderr


def test_err_and_errs_by_cell_interpolate_the_notebooks_exceptions(ip):
    ip.user_ns.pop("Err", None)
    ip.user_ns.pop("err", None)
    with pytest.raises(UsageError, match=r"\{err\} is not set: no cell has raised"):
        ip.run_cell_magic("llm", "sandbox/echo --no-cache", "explain {err}")
    with capture_output():
        failed = ip.run_cell("def f(d):\n    return d['missing']\nf({})", store_history=True)
    assert isinstance(failed.error_in_exec, KeyError)
    n = failed.execution_count
    with capture_output():
        ip.run_cell("1 / 0", store_history=True)
    answer = ask(ip, "sandbox/echo --no-cache", "explain {err}")
    assert answer.text.startswith("explain Traceback (most recent call last):")
    assert answer.text.endswith("ZeroDivisionError: division by zero") and "IPython/core" not in answer.text
    answer = ask(ip, "sandbox/echo --no-cache", f"and this: {{Err[{n}]}}")
    assert "return d['missing']" in answer.text and answer.text.endswith("KeyError: 'missing'")
    ip.user_ns["err"] = "my own variable"
    assert ask(ip, "sandbox/echo --no-cache", "{err}").text == "my own variable"  # yours wins
    del ip.user_ns["err"]


def test_an_exception_holding_a_key_is_not_sent(ip, monkeypatch):
    secret = "sk-proj-" + "Z" * 40
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with capture_output():
        ip.run_cell(f"raise RuntimeError('bad key {secret}')", store_history=True)
    answer = ask(ip, "sandbox/echo --no-cache", "explain {err}")
    assert secret not in answer.text and "RuntimeError: bad key" in answer.text


def test_llm_config_metrics_otel_exports_every_cell_and_local_stops_it(ip, monkeypatch):
    """``%llm_config --metrics otel`` builds an OpenTelemetryMetrics on the application's tracing (here the
    SDK set globally, as a user's setup would); each %%llm cell is then one trace; ``local`` stops it."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from coffee_nb import get_session

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)  # the user's tracing, set up
    ip.run_line_magic("llm_config", "--metrics otel")
    assert type(get_session().exporters[0]).__name__ == "OpenTelemetryMetrics"
    with capture_output():
        ip.run_cell_magic("llm", "sandbox/fast --no-cache", "traced?")
    roots = [s for s in exported.get_finished_spans() if s.parent is None]
    assert [s.name for s in roots] == ["chat fast"]
    assert len({s.context.trace_id for s in exported.get_finished_spans()}) == 1  # one trace per cell
    ip.run_line_magic("llm_config", "--metrics local")
    with capture_output():
        ip.run_cell_magic("llm", "sandbox/fast --no-cache", "not traced")
    assert len([s for s in exported.get_finished_spans() if s.parent is None]) == 1
