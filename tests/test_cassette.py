"""Cassettes: record against the sandbox, replay in a fresh process with no sandbox at all, strict misses
name the difference, files are stable and never hold a secret."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

import coffee_nb
from coffee_nb import AutoPicker, Budget, CassetteError, CassetteMissError, capture_records, sandbox

pytestmark = pytest.mark.usefixtures("quiet_sandbox")

PROMPTS = ["What is p95 latency?", "Name three coffee beans.", "Why do retries need jitter?"]


def record(path, prompts=PROMPTS):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"])
    with coffee_nb.cassette(path, mode="record"):
        return [llm.invoke(p).content for p in prompts]


def test_replay_in_a_fresh_process_without_the_sandbox_is_free_and_makes_no_request(tmp_path):
    path = tmp_path / "nb.llm-cassette.jsonl"
    answers = record(path)
    assert len(sandbox.attempts()) == 3
    code = textwrap.dedent(
        f"""
        import json, sys
        import coffee_nb
        from coffee_nb import AutoPicker, Budget, capture_records
        budget = Budget(total=1, ledger="memory")
        llm = AutoPicker("sandbox/fast", ["sandbox/echo"], budget=budget)
        out = []
        with coffee_nb.cassette({str(path)!r}, mode="strict"), capture_records() as records:
            for p in {PROMPTS!r}:
                msg = llm.invoke(p)
                s = coffee_nb.CallSummary.of(msg)
                out.append([msg.content, s.replayed, str(s.cost), str(s.recorded_cost)])
        started = coffee_nb.sandbox._SANDBOX.server is not None
        print(json.dumps({{"out": out, "spent": str(budget.spent()), "sandbox_started": started,
                          "records": [[r.replayed, r.price_source] for r in records]}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row[0] for row in data["out"]] == answers  # same answers
    assert all(row[1] is True and float(row[2]) == 0 and row[3] != "None" for row in data["out"])  # $0, recorded cost
    assert data["spent"] == "0" and data["sandbox_started"] is False  # no budget charge, no server, no request
    assert data["records"] == [[True, "cassette"]] * 3


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_streaming_replays_stream(tmp_path, mode):
    path = tmp_path / "c.jsonl"
    answer = record(path, ["stream me please"])[0]
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"])
    sandbox.clear_log()
    with coffee_nb.cassette(path, mode="strict"):
        if mode == "stream":
            chunks = list(llm.stream("stream me please"))
        else:

            async def go():
                return [c async for c in llm.astream("stream me please")]

            chunks = asyncio.run(go())
    assert len([c for c in chunks if c.content]) > 3  # word by word, like the real stream
    assert coffee_nb.collect(chunks).content == answer
    assert coffee_nb.collect(chunks).response_metadata["coffee_nb"]["replayed"] is True
    assert sandbox.attempts() == []


def test_strict_miss_names_the_request_and_the_nearest_entry_and_sends_nothing(tmp_path):
    path = tmp_path / "c.jsonl"
    record(path)
    sandbox.clear_log()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"])
    with coffee_nb.cassette(path, mode="strict"), pytest.raises(CassetteMissError) as info:
        llm.invoke("Name four coffee beans.")  # an edited prompt
    text = str(info.value)
    assert str(path) in text and "Name four coffee beans." in text
    assert "-" in text and "three" in text and "four" in text  # the diff against the nearest entry
    assert sandbox.attempts() == []


def test_replay_mode_calls_and_records_what_is_missing(tmp_path):
    path = tmp_path / "c.jsonl"
    record(path, PROMPTS[:1])
    sandbox.clear_log()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"])  # the same chain: the chain is part of the request
    with coffee_nb.cassette(path, mode="replay") as tape:
        llm.invoke(PROMPTS[0])  # replayed
        llm.invoke(PROMPTS[1])  # called and recorded
    assert len(sandbox.attempts()) == 1 and len(tape) == 2 and tape.replays == 1


def test_rerecording_unchanged_calls_gives_a_byte_identical_file(tmp_path):
    path = tmp_path / "c.jsonl"
    record(path)
    first = path.read_bytes()
    record(path)
    assert path.read_bytes() == first
    lines = first.decode().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["response"]["content"] for line in lines)  # readable text


def test_replayed_answers_are_never_charged_to_a_budget(tmp_path):
    path = tmp_path / "c.jsonl"
    record(path)
    budget = Budget(total=1, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], budget=budget)
    with coffee_nb.cassette(path, mode="strict"), capture_records() as records:
        llm.invoke(PROMPTS[0])
    assert budget.spent() == 0 and budget.status()["total"]["reserved"] == 0
    assert records[0].cost == 0 and records[0].replayed


def test_no_secret_is_written(tmp_path, monkeypatch):
    canary = "sk-canary-" + "7" * 32
    bare = "canarykey" + "8" * 30  # a key with no telltale prefix: redacted because it is a key in use
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    monkeypatch.setenv("ANTHROPIC_API_KEY", bare)
    path = tmp_path / "c.jsonl"
    llm = AutoPicker("sandbox/echo")
    with coffee_nb.cassette(path, mode="record"):
        llm.invoke(f"my keys are {canary} and {bare}")  # echoed back by the model, too
    text = path.read_text()
    assert canary not in text and bare not in text and "redacted" in text


def test_bad_mode_corrupt_file_and_unwritable_path_are_clear_errors(tmp_path):
    with pytest.raises(CassetteError, match="unknown cassette mode"):
        coffee_nb.Cassette(tmp_path / "x.jsonl", mode="rewind")
    path = tmp_path / "c.jsonl"
    record(path)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated mid-entry
    with pytest.raises(CassetteError, match=r"corrupt at line \d") as info:
        coffee_nb.Cassette(path, mode="replay")
    assert str(path) in str(info.value)
    assert path.read_text() == good[: len(good) // 2]  # never overwritten
    assert (tmp_path / "c.jsonl.bak").read_text() == good[: len(good) // 2]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        pytest.raises(CassetteError, match=r"the cassette at .*file/c\.jsonl: Not a directory"),
        coffee_nb.cassette(blocker / "c.jsonl", mode="record"),
    ):
        AutoPicker("sandbox/fast").invoke("hi")  # refused before any call is paid for


def test_magic_records_and_a_changed_cell_replaces_its_stale_entry(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.reset()
    path = tmp_path / "nb.llm-cassette.jsonl"
    cell_id = ["cell-A"]  # what JupyterLab sends with each execute request: the cell's stable id
    monkeypatch.setattr(
        ip, "kernel", SimpleNamespace(get_parent=lambda: {"metadata": {"cellId": cell_id[0]}}), raising=False
    )
    try:
        coffee_nb.configure(models=["sandbox/fast"])
        assert "record" in ip.run_line_magic("llm_cassette", f"record {path}")
        with capture_output():
            ip.run_cell_magic("llm", "", "first version of the question")
            cell_id[0] = "cell-B"
            ip.run_cell_magic("llm", "", "another cell")
        assert len(path.read_text().splitlines()) == 2
        cell_id[0] = "cell-A"  # the first cell, edited and re-run
        with capture_output():
            ip.run_cell_magic("llm", "", "second version of the question")
        lines = path.read_text().splitlines()
        assert len(lines) == 2 and "second version" in lines[0] and "first version" not in path.read_text()
        assert ip.run_line_magic("llm_cassette", "off") == "cassette off"
    finally:
        ip.run_line_magic("llm_cassette", "off")
        coffee_nb.reset()


def test_replayed_answers_say_so_in_the_footer(tmp_path, no_keys):
    path = tmp_path / "c.jsonl"
    coffee_nb.configure(models=["sandbox/fast"])
    with coffee_nb.cassette(path, mode="record"):
        paid = coffee_nb.ask("a footer, please", cache=False)
    with coffee_nb.cassette(path, mode="strict"):
        replay = coffee_nb.ask("a footer, please", cache=False)
    assert replay.text == paid.text and replay.cost == 0 and replay.replayed
    assert f"replayed from the cassette; recorded cost {coffee_nb._shared._format.money(paid.cost)}" in replay.footer()
