"""``%%llm`` and friends, driven through a real IPython InteractiveShell against the sandbox."""

from __future__ import annotations

import itertools
import re
import time

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import AllModelsFailedError, BudgetExceededError, sandbox
from coffee_nb.notebook.render import ErrorBox, Rendered


def outputs(captured):
    """text/plain of every display (and update) in order."""
    return [o.data.get("text/plain", "") for o in captured.outputs]


def run(ip, line, cell):
    with capture_output() as cap:
        ip.run_cell_magic("llm", line, cell)
    return cap


def test_load_ext_registers_magics_and_stays_light(ip):
    magics = ip.magics_manager.magics
    assert "llm" in magics["cell"]
    for name in ("llm_config", "llm_models", "llm_budget", "llm_costs", "llm_history", "llm_reset", "llm_dashboard"):
        assert name in magics["line"], name


def test_basic_cell_streams_then_renders_with_footer(ip):
    cap = run(ip, "", "Say something about coffee")
    texts = outputs(cap)
    assert texts[0] == ""  # the live output first (its plain-text twin is empty)
    assert all("application/vnd.jupyter.widget-view+json" not in o.data for o in cap.outputs)  # no widget
    final = texts[-1]
    assert "You said: 'Say something about coffee'" in final
    assert "sandbox/fast ·" in final and "tokens" in final and "(sandbox prices)" in final
    assert "daily budget left $" in final
    assert "No API keys found" in final  # the first output says the sandbox is in use
    answer = ip.user_ns["_"]
    assert isinstance(answer, coffee_nb.Answer) and ip.user_ns["Out"][ip.execution_count] is answer
    assert answer.message.response_metadata["coffee_nb"]["attempts"][0]["model"] == "sandbox/fast"
    second = outputs(run(ip, "--no-cache", "Another question"))[-1]
    assert "No API keys found" not in second  # said once


def test_streaming_updates_one_output_in_place_then_the_answer_replaces_it(ip, monkeypatch):
    from coffee_nb.notebook import render

    monkeypatch.setattr(render, "STREAM_INTERVAL", 0.0)
    sandbox.set_latency_scale(1.0)  # tokens arrive over time
    cap = run(ip, "sandbox/smart --no-cache", "Stream please")
    htmls = [o.data.get("text/html", "") for o in cap.outputs]
    partial = [h for h in htmls if "▌" in h]
    assert len(partial) > 5  # many live updates...
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(partial))  # ...that only grow
    final = " ".join(str(v) for v in cap.outputs[-1].data.values())
    assert "▌" not in final and "Stream please" in final  # then the answer, as its own output
    live = [o for o in cap.outputs if (o.transient or {}).get("display_id")]
    assert live[-1].data.get("text/html") == "" and len(live) == len(cap.outputs) - 1  # the live one blanked


def test_stream_updates_are_throttled(ip):
    from coffee_nb.notebook.render import AnswerView

    view = AnswerView(stream=True, interval=0.05)
    start = time.monotonic()
    for _ in range(2000):
        view.token("x")
    elapsed = time.monotonic() - start
    view.clear()  # (as a cell does: no trailing update after this test)
    assert view.updates <= elapsed / 0.05 + 2 and view.text == "x" * 2000


def test_no_stream_and_out_variable(ip):
    cap = run(ip, "--no-stream -o reply", "Hello")
    assert len(cap.outputs) == 1 and not (cap.outputs[0].transient or {}).get("display_id")
    assert isinstance(ip.user_ns["reply"], coffee_nb.Answer)
    assert ip.user_ns["reply"] is ip.user_ns["_"]


def test_models_system_temperature_max_tokens(ip):
    run(ip, "sandbox/echo sandbox/fast -s 'Be terse' -t 0.2 -m 3 --no-cache", "one two three four five")
    answer = ip.user_ns["_"]
    assert answer.model == "sandbox/echo"
    assert answer.tokens["output"] == 3  # max tokens reached the server, which truncated
    assert answer.message.response_metadata["finish_reason"] == "length"


def test_models_comma_separated(ip):
    sandbox.inject("sandbox/fast", ["auth"])
    run(ip, "sandbox/fast,sandbox/echo --no-cache", "fallback please")
    answer = ip.user_ns["_"]
    assert answer.model == "sandbox/echo" and answer.fallback_reason == "auth"
    assert "fallback from sandbox/fast (auth)" in answer.footer()


@pytest.mark.parametrize("fmt", ["markdown", "text", "code", "json", "html"])
def test_formats(ip, fmt):
    sandbox.script_replies("sandbox/echo", ['Here:\n```json\n{"a": [1, 2], "b": "{x}"}\n```'])
    run(ip, f"sandbox/echo -f {fmt} --no-cache", "x")
    answer = ip.user_ns["_"]
    rendered = Rendered(answer)
    page = rendered._repr_html_() or ""
    words = re.sub(r"<[^>]+>", "", page)  # what the reader sees
    if fmt in ("json", "code"):  # our own block: highlighted, never broken mid-word (it scrolls sideways)
        assert rendered._repr_markdown_() is None and "white-space:pre;" in page and "word-break:normal" in page
        assert "var(--jp-mirror-editor-string-color)" in page and "sandbox/echo ·" in words  # + footer
    if fmt == "json":
        assert answer.parsed == {"a": [1, 2], "b": "{x}"}  # fenced JSON parsed
        assert '"a": [' in words and '"a": [' in repr(rendered)
    elif fmt == "code":
        assert "```" not in words and words.startswith('{"a": [1, 2]') and repr(rendered).startswith('{"a"')
    elif fmt == "html":
        assert "Here:" in page and "mathjax_ignore" in page
    elif fmt == "text":
        assert page.startswith("<pre") and "word-break:normal" in page and rendered._repr_markdown_() is None
    else:
        assert rendered._repr_markdown_().startswith("Here:")


def test_bad_json_answer_is_kept_with_a_warning(ip):
    sandbox.script_replies("sandbox/echo", ["not json at all"])
    final = outputs(run(ip, "sandbox/echo -f json --no-cache", "x"))[-1]
    assert "not valid JSON" in final and "not json at all" in final and "sandbox/echo ·" in final


def test_code_next_cell(ip):
    sandbox.script_replies("sandbox/echo", ["```python\nprint('hi')\n```"])
    run(ip, "sandbox/echo -f code --next-cell --no-cache", "x")
    assert ip.rl_next_input == "print('hi')"


def test_interpolation_edge_cases(ip):
    ip.user_ns.update({"name": "Ada", "cfg": {"k": [10, 20]}, "obj": type("O", (), {"attr": "A"})()})
    n = ip.execution_count
    ip.run_cell("x = 41 + 1", store_history=True)
    cell = (
        "{name} {cfg['k'][1]} {obj.attr} {In[%d]} {Out[0]}\n"  # noqa: UP031 (% leaves the braces alone)
        "code: def f(d): return {k: v for k, v in d.items()}\n"
        'json: {"a": {"b": 1}}\n'
        "literal: {{name}}\n"
        "Traceback: KeyError: {missing}"
    ) % n
    ip.user_ns["Out"][0] = "zero"
    with capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/echo --no-cache --no-stream --allow-missing", cell)
    sent = ip.user_ns["_"].text
    assert sent.splitlines()[0] == "Ada 20 A x = 41 + 1 zero"
    assert "{k: v for k, v in d.items()}" in sent and '{"a": {"b": 1}}' in sent
    assert "literal: {name}" in sent and "KeyError: {missing}" in sent
    assert "{missing} is not defined" in cap.stderr


def test_cache_hit_costs_nothing_and_no_request(ip):
    run(ip, "sandbox/fast", "cache me")
    before = sandbox.server().requests["fast"]
    spent = coffee_nb.get_session().budget.spent("daily")
    final = outputs(run(ip, "sandbox/fast", "cache me"))[-1]
    answer = ip.user_ns["_"]
    assert answer.cache_hit and "$0 (cache hit)" in final
    assert sandbox.server().requests["fast"] == before  # no request reached the server
    assert coffee_nb.get_session().budget.spent("daily") == spent
    run(ip, "sandbox/fast --no-cache", "cache me")
    assert sandbox.server().requests["fast"] == before + 1


def test_dry_run_makes_no_call(ip):
    before = dict(sandbox.server().requests)
    cap = run(ip, "sandbox/fast sandbox/smart --dry-run -m 100", "How much would this cost?")
    assert dict(sandbox.server().requests) == before
    text = outputs(cap)[-1]
    assert "no call made" in text and "sandbox/fast" in text and "sandbox/smart" in text
    assert "daily left after" in text and "(sandbox)" in text


def test_chat_keeps_a_conversation_and_rerun_replaces(ip):
    session = coffee_nb.get_session()
    run(ip, "sandbox/echo --chat", "first turn")
    run(ip, "sandbox/echo --chat", "second turn")
    assert len(session.conversation) == 2
    run(ip, "sandbox/echo --chat", "first turn")  # the same cell again
    assert len(session.conversation) == 2  # replaced, not appended
    sent = session.conversation.history("unknown-key")
    assert [m.content for m in sent if m.type == "human"] == ["first turn", "second turn"]
    ip.run_line_magic("llm_reset", "")
    assert len(session.conversation) == 0


def test_budget_override_for_one_cell(ip):
    with pytest.raises(BudgetExceededError), capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/smart --budget 0.000001 --no-cache", "too expensive")
    assert "BudgetExceededError" in outputs(cap)[-1]


def test_session_budget_exceeded_renders_a_box_and_raises(ip):
    ip.run_line_magic("llm_config", "--daily 0.000001")
    with pytest.raises(BudgetExceededError) as info, capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/fast --no-cache", "x")
    box = outputs(cap)[-1]
    assert box.startswith("✖ BudgetExceededError") and "daily budget" in box and "→ Raise the limit" in box
    assert info.value._render_traceback_()[0].startswith("BudgetExceededError: ")


def test_all_models_failed_renders_each_attempt(ip):
    sandbox.inject("sandbox/fast", ["auth"])
    sandbox.inject("sandbox/echo", ["auth"])
    with pytest.raises(AllModelsFailedError), capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/fast sandbox/echo --no-cache", "x")
    text = outputs(cap)[-1]
    assert "1. sandbox/fast" in text and "2. sandbox/echo" in text and "auth" in text
    html = ErrorBox(AllModelsFailedError([], "x"))._repr_html_()
    assert "AllModelsFailedError" in html


def test_keys_never_printed(ip, monkeypatch):
    secret = "sk-proj-SECRETSECRETSECRET0000"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    # the real OpenAI client, pointed at the sandbox (loopback), which answers 404 for this model
    monkeypatch.setenv("OPENAI_API_BASE", sandbox.server().url)
    with pytest.raises(AllModelsFailedError), capture_output() as cap:
        ip.run_cell_magic("llm", "openai/gpt-4o-mini --no-cache", "x")
    everything = cap.stdout + cap.stderr + "".join(outputs(cap))
    assert secret not in everything
    config = repr(ip.run_line_magic("llm_config", ""))
    assert secret not in config


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--temperature hot", "invalid float"),
        ("--temperature 9", r"within \[0, 2\], got 9"),
        ("--max-tokens -5", "positive"),
        ("--format yaml", "--format must be one of"),
        ("--budget lots", "amount in USD"),
        ("nope/model", "unknown provider 'nope'"),
        ("gpt-4o", "Did you mean 'openai/gpt-4o'"),
        ("--out 3x", "variable name"),
        ("--system 'unclosed", "quote values"),
        ("--bogus", "unknown option --bogus; the options are"),
    ],
)
def test_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("llm", line, "prompt")


def test_empty_cell(ip):
    with pytest.raises(UsageError, match="cell is empty"):
        ip.run_cell_magic("llm", "", "   \n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_argument_line_gives_a_result_or_a_usage_error(ip, line):
    try:
        with capture_output():
            ip.run_cell_magic("llm", line + " --dry-run", "prompt")
    except UsageError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(
        st.sampled_from(
            [
                "-t",
                "0.5",
                "-m",
                "10",
                "-f",
                "json",
                "--chat",
                "--no-stream",
                "--no-cache",
                "'a b'",
                '"',
                "sandbox/echo",
                "x/y",
                "--budget",
                "1",
                "-o",
                "v",
                "--",
                "-",
                "{",
                "}",
                "-s",
            ]
        ),
        max_size=8,
    )
)
def test_option_soup_gives_a_result_or_a_usage_error(ip, words):
    try:
        with capture_output():
            ip.run_cell_magic("llm", " ".join(words) + " --dry-run", "prompt")
    except UsageError:
        pass


def test_line_magics(ip):
    run(ip, "sandbox/fast", "something")
    config = ip.run_line_magic("llm_config", "--models sandbox/echo,sandbox/fast --daily 7 --system 'Be kind'")
    assert isinstance(config, pd.DataFrame) and "sandbox/echo → sandbox/fast" in repr(config)
    assert "daily $7.00" in repr(config)
    assert "Be kind" in repr(config)
    models = ip.run_line_magic("llm_models", "")
    assert {"openai/gpt-4o-mini", "sandbox/fast"} <= set(models.index)
    assert models.loc["openai/gpt-4o-mini", "context_window"] == 128_000
    assert models.loc["sandbox/fast", "key"] == "not needed" and models.loc["sandbox/fast", "price_source"] == "sandbox"
    budget = repr(ip.run_line_magic("llm_budget", ""))
    assert "daily" in budget and "$7.00" in budget
    costs = ip.run_line_magic("llm_costs", "")
    assert "sandbox/fast" in costs.index
    history = ip.run_line_magic("llm_history", "5")
    assert list(history.columns)[:3] == ["started_at", "model", "role"] and len(history) >= 1
    with pytest.raises(UsageError):
        ip.run_line_magic("llm_history", "lots")
    with pytest.raises(UsageError, match="daily"):
        ip.run_line_magic("llm_config", "--daily -3")
    with pytest.raises(UsageError, match="unknown provider"):
        ip.run_line_magic("llm_config", "--models nope/x")
    board = ip.run_line_magic("llm_dashboard", "")
    assert repr(board) == "coffee_nb dashboard (live)" and board.counter_values()["requests"] >= 1
    assert "daily" in board.gauge.bars
    board.close()
    ip.run_line_magic("llm_reset", "--all")
    assert coffee_nb.get_session().models is None


def test_configure_from_python_drives_the_magic(ip):
    coffee_nb.configure(models=["sandbox/echo"], system="sys")
    run(ip, "--no-cache", "from python config")
    assert ip.user_ns["_"].model == "sandbox/echo"
    assert ip.user_ns["_"].text == "from python config"
