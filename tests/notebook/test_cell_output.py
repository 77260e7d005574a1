"""What a ``%%llm`` cell shows (issue 15 items 1-7), through a real IPython shell against the sandbox:
amounts stay literal, JSON that isn't keeps its answer, one box per error with advice for its cause,
budget warnings as notices, an interrupt in one line, retries said live, truncation said."""

from __future__ import annotations

import re
import signal
import threading
import warnings

import pytest
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import AllModelsFailedError, BudgetExceededError, BudgetWarning, sandbox
from coffee_nb._shared._markdown import LITERAL_DOLLAR, markdown_safe
from coffee_nb.notebook import render
from coffee_nb.notebook.render import ErrorBox, Notice, Rendered

MONEY = "Plan A costs $5 per month and plan B costs $12."


def cell(ip, line, body):
    """Run ``%%llm`` as a notebook cell would (``run_cell``): the result and what was shown."""
    with capture_output() as cap:
        result = ip.run_cell(f"%%llm {line}\n{body}")
    return result, cap


def shown(cap, mime="text/plain"):
    return [o.data.get(mime, "") for o in cap.outputs]


# -- 1. $ amounts ----------------------------------------------------------------------------------
def test_markdown_keeps_amounts_literal_and_math_as_math():
    text = "costs $5 or $12; `echo $HOME`; $$x^2$$ and \\(y\\) and \\[z\\] and $a+b$.\n```sh\nexport A=$B\n```"
    out = markdown_safe(text)
    assert out.count(LITERAL_DOLLAR) == 2 and f"{LITERAL_DOLLAR}5" in out and f"{LITERAL_DOLLAR}12" in out
    assert "`echo $HOME`" in out and "export A=$B" in out  # code as written
    assert "$$x^2$$" in out and "$y$" in out and "$$z$$" in out and "$a+b$" in out  # math still math
    assert markdown_safe("no money here") == "no money here"


def test_an_answer_with_amounts_renders_them_literally(ip):
    sandbox.script_replies("sandbox/echo", [MONEY + " Math: $$E=mc^2$$"])
    _, cap = cell(ip, "sandbox/echo --no-cache", "x")
    md = shown(cap, "text/markdown")[-1]
    assert f"{LITERAL_DOLLAR}5 per month" in md and f"{LITERAL_DOLLAR}12." in md and "$$E=mc^2$$" in md
    assert MONEY in shown(cap)[-1]  # the plain-text twin is the text as it came
    assert f"{LITERAL_DOLLAR}12" in ip.user_ns["_"]._repr_markdown_()  # the Answer shown on its own too


def test_html_outputs_are_out_of_mathjax_reach(ip):
    sandbox.script_replies("sandbox/echo", [MONEY, MONEY])
    _, cap = cell(ip, "sandbox/echo --no-cache -f html", "x")
    assert shown(cap, "text/html")[-1].startswith("<div class='tex2jax_ignore mathjax_ignore'>")
    box = ErrorBox(BudgetExceededError("daily budget of $0.01 can't cover a call to m: ..."))._repr_html_()
    assert "mathjax_ignore" in box and "$0.01" in box
    assert "mathjax_ignore" in Notice("spent $4")._repr_html_()


# -- 2. --format json ------------------------------------------------------------------------------
def test_json_that_isnt_keeps_the_text_warns_once_and_is_recorded(ip):
    session = coffee_nb.get_session()
    sandbox.script_replies("sandbox/echo", ["Sure! {not: json"])
    before = len(session.metrics.to_dataframe())
    result, cap = cell(ip, "sandbox/echo -f json -o res --no-cache", "x")
    assert result.success and not cap.stderr  # no red block
    final = shown(cap)[-1]
    assert final.startswith("⚠ ") and "not valid JSON" in final and "kept in _ and res" in final
    assert "Sure! {not: json" in final and "sandbox/echo ·" in final  # the raw text and the footer
    page = shown(cap, "text/html")[-1]
    assert "Sure! {not: json" in page and "sandbox/echo ·" in page and "⚠" in page
    assert ip.user_ns["res"].text == "Sure! {not: json" and ip.user_ns["_"] is ip.user_ns["res"]
    live = [o for o in cap.outputs if (o.transient or {}).get("display_id")]
    assert live and "▌" not in live[-1].data.get("text/html", "")  # the cursor never stays
    assert len(session.metrics.to_dataframe()) == before + 1  # billed and recorded
    assert session.budget.spent("daily") > 0


def test_valid_json_has_its_footer(ip):
    sandbox.script_replies("sandbox/echo", ['{"a": 1}'])
    _, cap = cell(ip, "sandbox/echo -f json --no-cache", "x")
    page = re.sub(r"<[^>]+>", "", shown(cap, "text/html")[-1])
    assert '"a": 1' in page and "sandbox/echo ·" in page and "application/json" not in cap.outputs[-1].data


# -- 3. one box per error, advice per cause --------------------------------------------------------
def _boxes(cap):
    return [o for o in cap.outputs if "coffee-nb-error" in o.data.get("text/html", "")]


def test_a_budget_error_shows_one_box_and_still_fails_the_cell(ip):
    ip.run_line_magic("llm_config", "--daily 0.000001")
    result, cap = cell(ip, "sandbox/fast --no-cache", "x")
    assert isinstance(result.error_in_exec, BudgetExceededError) and not result.success  # Run All stops
    assert len(_boxes(cap)) == 1 and "BudgetExceededError" not in cap.stdout + cap.stderr  # nothing else
    box = shown(cap)[-1]
    assert "daily budget of $0.000001" in box and "%llm_config --daily" in box and "never resets" not in box
    assert box.count("Raise the limit") == 1


def test_a_call_bigger_than_the_whole_limit_is_not_told_to_wait(ip):
    ip.run_line_magic("llm_config", "--daily 0.0000001")  # Decimal prints it as 1E-7
    _, cap = cell(ip, "sandbox/fast --no-cache", "x")
    box = shown(cap)[-1]
    assert "daily budget of $0.0000001" in box and "1E-7" not in box
    need = re.search(r"this call alone may cost up to \$([\d.]+)", box)
    suggested = re.search(r"%llm_config --daily ([\d.]+)\)", box)
    assert need and suggested, box
    assert float(suggested[1]) >= float(need[1])  # the limit it suggests lets this call through
    assert "wait for the reset" not in box  # waiting can't help: the call alone is over the limit


def test_a_limit_spent_already_suggests_a_limit_that_fits_and_the_reset(ip):
    ip.run_line_magic("llm_config", "--daily 0.01")
    coffee_nb.get_session().budget.record("0.0095", model="earlier-work")
    _, cap = cell(ip, "sandbox/smart --no-cache -m 200", "x")
    box = shown(cap)[-1]
    suggested = re.search(r"%llm_config --daily ([\d.]+)\)", box)
    need = re.search(r"may cost up to \$([\d.]+)", box)
    assert suggested and need, box
    assert float(suggested[1]) >= 0.0095 + float(need[1]) and float(suggested[1]) >= 0.02
    assert re.search(r"wait for the reset \(at \d{4}-\d\d-\d\d \d\d:\d\d UTC, in \d+h\d\dm\)", box), box


def test_a_cell_budget_too_small_is_named_as_such(ip):
    result, cap = cell(ip, "sandbox/smart --budget 0.000001 --no-cache", "too expensive")
    assert isinstance(result.error_in_exec, BudgetExceededError)
    box = shown(cap)[-1]
    assert "this cell's --budget of $0.000001" in box and "larger --budget" in box
    assert "never resets" not in box and "%llm_config" not in box


def test_attempts_are_numbered_once_and_auth_advice_names_keys(ip):
    sandbox.inject("sandbox/fast", ["auth"])
    sandbox.inject("sandbox/echo", ["auth"])
    result, cap = cell(ip, "sandbox/fast sandbox/echo --no-cache", "x")
    assert isinstance(result.error_in_exec, AllModelsFailedError) and len(_boxes(cap)) == 1
    html = shown(cap, "text/html")[-1]
    assert "<li><code>sandbox/fast [primary] auth" in html and "1. " not in html  # the <ol> numbers them
    assert "API key" in html


def test_a_pure_rate_limit_advises_waiting_not_keys(ip):
    coffee_nb.configure(policy=coffee_nb.Policy(max_retries=0))
    sandbox.inject("sandbox/fast", ["rate_limit:0.01"])
    sandbox.inject("sandbox/echo", ["rate_limit:0.01"])
    _, cap = cell(ip, "sandbox/fast sandbox/echo --no-cache", "x")
    box = shown(cap)[-1]
    assert "Rate limited: wait" in box and "key" not in box.split("→", 1)[1]


def test_context_overflow_advises_a_shorter_prompt(ip):
    sandbox.inject("sandbox/fast", ["context_overflow"])
    _, cap = cell(ip, "sandbox/fast --no-cache", "x")
    assert "shorten it" in shown(cap)[-1]


def test_other_errors_still_show_as_usual(ip):
    cell(ip, "sandbox/fast --budget 0.000001 --no-cache", "x")  # the quiet handler is installed now
    with capture_output() as cap:
        ip.run_cell("import coffee_nb; raise coffee_nb.ConfigError('shown as usual')")
        ip.run_cell("1/0")
    assert "ConfigError: shown as usual" in cap.stdout and "ZeroDivisionError" in cap.stdout


# -- 4. budget warnings ----------------------------------------------------------------------------
def test_budget_warnings_are_a_notice_under_the_answer(ip, monkeypatch):
    printed = []

    def _showwarnmsg_impl(msg):  # Python's own printer (pytest records warnings: a kernel prints them)
        printed.append(msg)

    monkeypatch.setattr(warnings, "_showwarnmsg_impl", _showwarnmsg_impl)
    ip.run_line_magic("llm_config", "--daily 0.0000001 --soft")
    _, cap = cell(ip, "sandbox/fast --no-cache", "x")
    notices = [o for o in cap.outputs if "coffee-nb-notice" in o.data.get("text/html", "")]
    assert notices and "coffee_nb budget" in notices[-1].data["text/plain"]
    assert "coffee-nb-notice" in shown(cap, "text/html")[-1]  # under the answer
    assert printed == []  # no ".../interactiveshell.py:2644: BudgetWarning: ..." line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)  # a real warning: the user's filters apply
        ip.run_line_magic("llm_config", "--daily 0.00000001 --soft")
        _, cap = cell(ip, "sandbox/fast --no-cache", "y")
    assert not [o for o in cap.outputs if "coffee-nb-notice" in o.data.get("text/html", "")]


# -- 5. interrupting a hung call -------------------------------------------------------------------
def test_interrupting_a_hung_call_is_one_line_and_releases_the_reservation(ip):
    sandbox.inject("sandbox/fast", ["hang:20"])
    main = threading.main_thread().ident
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))  # what Jupyter's interrupt does
    timer.start()
    try:
        result, cap = cell(ip, "sandbox/fast --no-cache", "will hang")
    finally:
        timer.cancel()
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    last = shown(cap)[-1]
    assert last.startswith("■ interrupted after ") and last.endswith(" s; nothing charged")
    assert "Traceback" not in cap.stdout + cap.stderr and "KeyboardInterrupt" not in cap.stdout
    live = [o for o in cap.outputs if (o.transient or {}).get("display_id")]
    assert live[-1].data.get("text/html") == ""  # the placeholder cleared
    assert coffee_nb.get_session().budget.status()["daily"]["reserved"] == 0
    sandbox.clear_faults()
    result, _ = cell(ip, "sandbox/fast --no-cache", "the kernel is fine")
    assert result.success and ip.user_ns["_"].text


def test_interrupting_mid_stream_keeps_the_text_that_came(ip, monkeypatch):
    sandbox.inject("sandbox/fast", ["stall:4:30"])  # four tokens at once, then silence with the connection open
    shown_live = threading.Event()
    update = render.AnswerView._update

    def watched(self, markup):
        update(self, markup)
        if "stalls" in markup:  # the fourth token is on screen although no token followed it
            shown_live.set()

    monkeypatch.setattr(render.AnswerView, "_update", watched)
    main = threading.main_thread().ident
    # (waits less than the 15 s idle limit: without the trailing flush the fourth token would never show)
    interrupter = threading.Thread(target=lambda: shown_live.wait(10) and signal.pthread_kill(main, signal.SIGINT))
    interrupter.start()
    try:
        result, cap = cell(ip, "sandbox/fast --no-cache", "stalls mid-stream")
    finally:
        interrupter.join()
    assert shown_live.is_set(), [o.data.get("text/html") for o in cap.outputs]
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    live = [o for o in cap.outputs if (o.transient or {}).get("display_id")]
    kept = live[-1].data.get("text/html", "")
    assert "You said: &#x27;stalls" in kept and "▌" not in kept  # what streamed stays, the cursor goes
    assert re.fullmatch(r"■ interrupted after [\d.]+ s; .*charged", shown(cap)[-1]), shown(cap)[-1]
    assert "Traceback" not in cap.stdout + cap.stderr


def test_the_last_tokens_show_even_when_none_follow(ip):
    with capture_output() as cap:
        view = render.AnswerView(stream=True, interval=0.05)
        flushed = threading.Event()
        update = view._update
        view._update = lambda markup: (update(markup), "a b c" in markup and flushed.set())
        for piece in ("a", " b", " c"):  # one burst: only the first is shown at once (throttled)
            view.token(piece)
        assert flushed.wait(10)  # the rest when the interval is up, with no further token
        view.clear()
    htmls = [o.data.get("text/html", "") for o in cap.outputs]
    assert any("a b c ▌" in h for h in htmls) and htmls[-1] == ""


# -- 6. live status while retrying -----------------------------------------------------------------
def test_retries_and_the_fallback_are_said_live(ip, monkeypatch):
    monkeypatch.setattr(render, "STREAM_INTERVAL", 0.0)
    sandbox.inject("sandbox/fast", ["rate_limit:0.05"] * 6)
    _, cap = cell(ip, "sandbox/fast sandbox/echo --no-cache", "status please")
    said = [h for h in shown(cap, "text/html") if "retrying" in h or "falling back" in h]
    assert any(re.search(r"sandbox/fast: 429, retrying in [\d.]+ s \(1/2\)…", h) for h in said), said
    assert any("(2/" in h and "(1/" not in h for h in said)  # a later retry replaces the earlier one
    assert re.search(r"\(2/2\)… falling back to sandbox/echo…", said[-1]), said[-1]
    assert ip.user_ns["_"].model == "sandbox/echo"


def test_without_streaming_the_status_appears_too(ip):
    sandbox.inject("sandbox/fast", ["auth"])
    _, cap = cell(ip, "sandbox/fast sandbox/echo --no-cache --no-stream", "x")
    said = " ".join(shown(cap, "text/html"))
    assert "sandbox/fast: 401…" in said and "falling back to sandbox/echo" in said


# -- 7. truncation ---------------------------------------------------------------------------------
def test_the_footer_says_the_output_limit_was_hit(ip):
    _, cap = cell(ip, "sandbox/echo -m 3 --no-cache", "one two three four five")
    answer = ip.user_ns["_"]
    assert answer.truncated and answer.finish_reason == "length"
    assert "stopped at the 3-token limit" in shown(cap)[-1]
    _, cap = cell(ip, "sandbox/echo --no-cache", "short")
    assert "token limit" not in shown(cap)[-1] and not ip.user_ns["_"].truncated


def test_rendered_plain_text_has_the_warning_line():
    class A:  # the few fields Rendered reads
        format, parsed, text, notice = "json", None, "raw", None

        def footer(self):
            return "m · 1→1 tokens"

    assert repr(Rendered(A(), "not valid JSON")) == "⚠ not valid JSON\nraw\n— m · 1→1 tokens"


@pytest.fixture(autouse=True)
def _no_leftover_faults():
    yield
    sandbox.clear_faults()
