"""The response cache: one key per exact request, messages stored without coffee_nb's trace, kept on disk."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from coffee_nb.replay._cache import ResponseCache, request_key


def test_the_key_is_the_exact_request():
    msgs = [SystemMessage("be brief"), HumanMessage("hi")]
    key = request_key(["openai/a", "sandbox/fast"], msgs, {"temperature": 0.5, "max_tokens": None})
    assert key == request_key(["openai/a", "sandbox/fast"], list(msgs), {"temperature": 0.5})  # None = not given
    assert len(key) == 64
    others = [
        request_key(["sandbox/fast", "openai/a"], msgs, {"temperature": 0.5}),  # chain order matters
        request_key(["openai/a", "sandbox/fast"], msgs, {"temperature": 0.7}),
        request_key(["openai/a", "sandbox/fast"], [HumanMessage("be brief"), HumanMessage("hi")], {"temperature": 0.5}),
        request_key(["openai/a", "sandbox/fast"], [*msgs, HumanMessage("more")], {"temperature": 0.5}),
    ]
    assert len({key, *others}) == 5


def test_put_then_get_round_trips_the_message_without_the_trace(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite3")
    assert cache.get("k") is None and len(cache) == 0
    message = AIMessage(
        "hello",
        response_metadata={"model_name": "fast", "coffee_nb": {"model": "sandbox/fast"}},
        usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    )
    cache.put("k", message, {"model": "sandbox/fast", "tokens": {"input": 3, "output": 1}})
    found = cache.get("k")
    assert found is not None
    got, meta = found
    assert isinstance(got, AIMessage) and got.content == "hello" and got.usage_metadata == message.usage_metadata
    assert got.response_metadata == {"model_name": "fast"}  # a replay gets a fresh trace, never the old one
    assert meta == {"model": "sandbox/fast", "tokens": {"input": 3, "output": 1}}
    cache.put("k", AIMessage("again"), {})  # same key: replaced
    assert len(cache) == 1 and cache.get("k")[0].content == "again"
    cache.close()


def test_answers_survive_a_new_connection_and_clear_empties(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite3"
    first = ResponseCache(path)  # makes the directory
    first.put("k", AIMessage("kept"), {})
    first.close()
    second = ResponseCache(path)
    assert second.get("k")[0].content == "kept" and repr(second) == f"ResponseCache({str(path)!r})"
    second.clear()
    assert second.get("k") is None
    second.close()


def test_the_default_file_lives_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(tmp_path / "data"))
    cache = ResponseCache()
    assert cache.path == tmp_path / "data" / "cache.sqlite3" and cache.path.exists()
    cache.close()
