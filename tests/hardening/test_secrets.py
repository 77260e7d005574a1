"""Canary keys in the environment and in a ModelSpec; every error path triggered, including a 400 whose
body echoes the key and a server echoing it without its prefix; then every artifact is searched for
the canaries: errors (text, repr, traceback, chained causes), records, DataFrames, widgets' state,
Prometheus text, SQLite files, logs, reprs and dumps, and a saved executed notebook."""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from pathlib import Path

import httpx
import pytest
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import AllModelsFailedError, AutoPicker, Budget, LocalMetrics, ModelSpec
from coffee_nb.testing import ScriptedChatModel, capture_records, http_error

from .conftest import CANARIES, CANARY_ANTHROPIC, CANARY_OPENAI, CANARY_PARAM


def _bare(key: str) -> str:
    return key.removeprefix("sk-proj-")


def assert_clean(what: str, text: str) -> None:
    for canary in CANARIES:
        for form in {canary, _bare(canary)}:
            assert form not in text, f"a key leaked into {what}: ...{text[max(0, text.find(form) - 80) :][:200]}"


def error_texts(exc: BaseException) -> str:
    """Everything an exception can show: str, repr, the traceback with its chain, IPython's short form,
    and the attributes SDK errors carry (message, body)."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    render = getattr(exc, "_render_traceback_", None)
    if render is not None:
        parts += render()
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts += [str(getattr(e, "message", "")), json.dumps(getattr(e, "body", None), default=str)]
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


def echoing_openai(status: int) -> ModelSpec:
    """A real ChatOpenAI (the openai SDK, httpx) whose server echoes the key it was sent, without its
    "Bearer " prefix, in the error body: an httpx MockTransport, no network."""

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        body = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error"}}
        return httpx.Response(status, json=body)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    params = {"api_key": CANARY_PARAM, "http_client": client, "base_url": "http://127.0.0.1:9/v1"}
    return ModelSpec(model="openai/gpt-4o-mini", name=f"openai/echo-{status}", params=params)


def test_no_key_in_any_artifact(canaries, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    from coffee_nb.metrics import PrometheusMetrics

    budget = Budget(daily=5, ledger=tmp_path / "ledger.sqlite3")
    local, prom = LocalMetrics(), PrometheusMetrics(budget=budget)
    texts: list[tuple[str, str]] = []
    with capture_records() as records:
        # 1. a 400 echoing the key: a caller error, raised as is (not wrapped), still without the key
        echo_400 = ScriptedChatModel(script=[http_error(400, f"bad request for key {CANARY_OPENAI}")])
        llm = AutoPicker(ModelSpec(model=echo_400, name="fake/echo400"), budget=budget, metrics=[local, prom])
        with pytest.raises(Exception) as info:
            llm.invoke("hi")
        assert type(info.value).__name__ == "BadRequestError"
        texts.append(("the echoing 400", error_texts(info.value)))
        # 2. a real SDK behind a server echoing the key without its prefix (400 and 401)
        for status in (400, 401):
            picker = AutoPicker(echoing_openai(status), budget=budget, metrics=[local, prom])
            with pytest.raises(Exception) as info:
                picker.invoke("hi")
            texts.append((f"the SDK's {status}", error_texts(info.value)))
        # 3. prefix-less echoes on every candidate: AllModelsFailedError lists each attempt
        echo_401 = ScriptedChatModel(script=[http_error(401, f"key {CANARY_ANTHROPIC} rejected")])
        echo_500 = ScriptedChatModel(script=[http_error(500, f"upstream said {_bare(CANARY_OPENAI)}")])
        chain = AutoPicker(
            ModelSpec(model=echo_401, name="fake/a"),
            [ModelSpec(model=echo_500, name="fake/b"), echoing_openai(401)],
            budget=budget,
            metrics=[local, prom],
            max_retries=0,
        )
        with pytest.raises(AllModelsFailedError) as failed:
            chain.invoke("hi")
        texts.append(("AllModelsFailedError", error_texts(failed.value)))
        # 4. a fallback that succeeds after an echoing failure: the answer's trace
        ok = AutoPicker(echoing_openai(401), ["sandbox/fast"], budget=budget, metrics=[local, prom])
        answer = ok.invoke("hello")
        texts.append(("the answer's trace", json.dumps(answer.response_metadata["coffee_nb"])))
    assert len(records) >= 7
    texts.append(("CallRecords", json.dumps([r.as_dict() for r in records], default=str)))
    texts.append(("reprs", "\n".join([str(chain), repr(chain), str(ok), repr(echoing_openai(400))])))
    keyed = AutoPicker(ModelSpec(model="openai/gpt-4o-mini", params={"api_key": CANARY_PARAM}), ["sandbox/fast"])
    dumps = keyed.model_dump_json() + json.dumps(keyed.model_dump(), default=str) + str(keyed)
    texts.append(("model_dump_json", dumps + json.dumps(chain.model_dump(), default=str)))
    texts.append(("LocalMetrics DataFrame", local.to_dataframe().to_csv() + local.summary().to_csv()))
    texts.append(("get_metrics", json.dumps(local.get_metrics(), default=str)))
    texts.append(("Prometheus", prom.exposition()))
    from coffee_nb.notebook._dashboard import Dashboard

    board = Dashboard(local, budget, health=ok)
    board.redraw(force=True)
    texts.append(("the dashboard's snapshot (what a saved notebook keeps)", json.dumps(board._repr_mimebundle_())))
    board.close()
    texts.append(("logs", caplog.text + "\n".join(r.getMessage() for r in caplog.records)))
    budget.close()
    texts.append(("ledger files", _file_bytes(tmp_path)))
    for what, text in texts:
        assert_clean(what, text)
    assert "[redacted]" in "".join(t for _, t in texts)  # the keys were there to be removed


def _file_bytes(directory: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in directory.rglob("*") if p.is_file())


def test_no_key_in_a_notebook_sessions_output_cache_or_ledger(ip, canaries, monkeypatch, tmp_path):
    data = tmp_path / "data"
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(data))
    echo = ScriptedChatModel(script=[http_error(400, f"no such key: {CANARY_ANTHROPIC}")])
    coffee_nb.configure(models=[ModelSpec(model=echo, name="fake/echo"), "sandbox/fast"])
    ip.user_ns["os"] = __import__("os")
    with capture_output() as cap, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip.run_cell("%%llm --no-stream\nfirst")  # the 400 is raised: IPython prints its traceback
        ip.run_cell("%%llm sandbox/fast --no-stream\nkey: {os.environ['OPENAI_API_KEY']}")
        ip.run_cell("%llm_config")
        ip.run_cell("%llm_history")
        ip.run_cell("%llm_costs")
    assert "BadRequestError" in cap.stdout + cap.stderr  # the error was shown...
    shown = cap.stdout + cap.stderr + "".join(json.dumps(o.data, default=str) for o in cap.outputs)
    assert_clean("the cell outputs", shown)  # ...without the key
    coffee_nb.reset()
    assert_clean("the cache and ledger files", _file_bytes(data))


@pytest.mark.timeout(120)
def test_no_key_in_a_saved_executed_notebook(canaries, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COFFEE_NB_SANDBOX_LATENCY_SCALE", "0")
    cells = [
        "%load_ext coffee_nb",
        "import os, coffee_nb\nfrom coffee_nb import ModelSpec\nfrom coffee_nb.testing import ScriptedChatModel, "
        "http_error\necho = ScriptedChatModel(script=[http_error(400, 'bad key ' + os.environ['OPENAI_API_KEY'])])\n"
        "coffee_nb.configure(models=[ModelSpec(model=echo, name='fake/echo')])",
        "%%llm --no-stream\na 400 that echoes the key",
        "%%llm sandbox/fast --no-stream\n{os.environ['ANTHROPIC_API_KEY']}",
        "spec = ModelSpec(model='openai/gpt-4o-mini', params={'api_key': os.environ['OPENAI_API_KEY']})\n"
        "picker = coffee_nb.AutoPicker(spec, ['sandbox/fast'])\nprint(picker, spec)\npicker",
        "%llm_config",
        "%llm_history",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    saved = path.read_text()
    assert "BadRequestError" in saved and "private" not in saved
    assert "environment variables are not interpolated" in saved
    assert_clean("the saved notebook", saved)


def test_a_key_set_changed_or_removed_mid_session_is_redacted_from_the_next_failure_on(monkeypatch):
    """Key values are read again whenever a key variable changes (a cheap check on every failure)."""
    from coffee_nb import AutoPicker
    from coffee_nb.errors._errors import classify
    from coffee_nb.testing import http_error

    AutoPicker("sandbox/fast")  # the providers (and their key variables) are registered
    for key in ("first-canary-value-0123456789", "second-canary-value-987654321"):  # not key-shaped: by value only
        monkeypatch.setenv("MISTRAL_API_KEY", key)
        error = http_error(500, message=f"upstream said: {key} is not allowed")
        info = classify(error)
        assert key not in info.message and key not in str(error)  # the message, and the exception itself
    monkeypatch.delenv("MISTRAL_API_KEY")
    error = http_error(500, message="echo second-canary-value-987654321")
    assert "second-canary-value-987654321" in classify(error).message  # no longer a key: nothing to hide


def test_a_providers_key_variable_is_redacted_from_the_first_failure_and_after_it_is_replaced(monkeypatch):
    """The key variables come from the provider registry: its built-in providers are counted even before
    anything loaded them, and a provider registered (or replaced) later adds its own at once."""
    from coffee_nb._shared import _config
    from coffee_nb.errors._errors import classify
    from coffee_nb.invoke import _models
    from coffee_nb.testing import ScriptedChatModel, http_error, isolated

    with isolated():
        assert not _config.PROVIDERS._loaded  # nothing has built a model in here yet
        monkeypatch.setenv("GROQ_API_KEY", "groq-canary-value-0123456789")
        assert "groq-canary-value" not in classify(http_error(500, "echo groq-canary-value-0123456789")).message
        monkeypatch.setenv("HOUSE_TOKEN", "house-canary-value-0123456789")
        monkeypatch.setenv("HOUSE_SECRET", "house-secret-value-0123456789")
        error = http_error(500, "echo house-canary-value-0123456789 house-secret-value-0123456789")
        assert "house-canary-value" in classify(error).message  # no provider says it is a key yet
        _models.register_provider("house", lambda m, k, s: ScriptedChatModel(), env_var="HOUSE_TOKEN")
        message = classify(http_error(500, "echo house-canary-value-0123456789")).message
        assert "house-canary-value" not in message and "[redacted]" in message
        # replaced under the same name, with one more secret variable
        _models.register_provider(
            "house", lambda m, k, s: ScriptedChatModel(), env_var="HOUSE_TOKEN", secret_vars=("HOUSE_SECRET",)
        )
        message = classify(http_error(500, "echo house-secret-value-0123456789")).message
        assert "house-secret-value" not in message


def test_scrub_reaches_every_place_an_exception_keeps_text(canaries):
    """The attributes a reply's text is kept in: in the instance, behind a property, in a builtin's slot
    (OSError.strerror), made up by __getattr__, and the message SDK errors keep twice."""
    from coffee_nb._shared._redact import scrub

    class HeldError(Exception):
        def __init__(self, text: str) -> None:
            super().__init__("held")
            self._text = text

        @property
        def detail(self) -> str:
            return self._text

        @detail.setter
        def detail(self, value: str) -> None:
            self._text = value

    class MadeUpError(Exception):
        def __getattr__(self, name: str) -> object:
            if name == "body":
                return self.__dict__.setdefault("_body", {"error": {"message": f"key {CANARY_OPENAI}"}})
            raise AttributeError(name)

        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__("_body" if name == "body" else name, value)

    held, made_up = HeldError(f"echo {CANARY_OPENAI}"), MadeUpError("x")
    os_error = OSError(13, f"denied for {CANARY_OPENAI}", "/tmp/x")
    sdk = http_error(400, f"bad key {_bare(CANARY_OPENAI)}")
    assert sdk.message is sdk.args[0]  # the same text twice, as the openai SDK keeps it
    for exc in (held, made_up, os_error, sdk):
        scrub(exc)
    assert_clean("a property", held.detail)
    assert_clean("__getattr__", json.dumps(made_up.body))
    assert_clean("OSError.strerror", str(os_error.strerror) + str(os_error))
    assert_clean("an SDK error", error_texts(sdk))
    assert "[redacted]" in held.detail and "[redacted]" in sdk.message and sdk.message == sdk.args[0]
