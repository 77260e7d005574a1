"""Offline tokens: exact for OpenAI encodings, a labelled estimate otherwise."""

from __future__ import annotations

import bpe_openai
from langchain_core.messages import HumanMessage, SystemMessage

from coffee_nb import count_message_tokens, count_tokens
from coffee_nb.pricing._tokens import encoding_for

TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé, emoji 🎉, code: def f(x): return {x: 1}"


def test_exact_o200k_and_cl100k():
    for name in ("o200k_base", "cl100k_base"):
        assert count_tokens(TEXT, name) == len(bpe_openai.get_encoding(name).encode(TEXT))
    assert count_tokens("", "o200k_base") == 0


def test_encodings_by_model():
    assert encoding_for("openai", "gpt-4o-mini") == ("o200k_base", True)
    assert encoding_for("openai", "gpt-5") == ("o200k_base", True)
    assert encoding_for("openai", "o3-mini") == ("o200k_base", True)
    assert encoding_for("openai", "gpt-4") == ("cl100k_base", True)
    assert encoding_for("openai", "gpt-3.5-turbo") == ("cl100k_base", True)
    assert encoding_for("anthropic", "claude-3-5-haiku-latest") == ("o200k_base", False)


def test_message_count_includes_framing_and_is_labelled():
    messages = [SystemMessage("be brief"), HumanMessage(TEXT)]
    exact = count_message_tokens(messages, "openai", "gpt-4o")
    body = count_tokens("be brief") + count_tokens(TEXT)
    assert exact.tokens == body + 2 * 3 + 3
    assert exact.exact and exact.encoding == "o200k_base"
    estimate = count_message_tokens(messages, "anthropic", "claude-3-5-haiku-latest")
    assert not estimate.exact and estimate.tokens == exact.tokens


def test_multimodal_content_blocks_count_their_text_and_their_images():
    msg = HumanMessage(
        content=[{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]
    )
    count = count_message_tokens([msg], "openai", "gpt-4o")
    # an image given by URL is never fetched: its size is unknown, so it counts as the most an image costs
    # on GPT-4o (8 tiles of 512 px: 85 + 8 x 170), and the count is an estimate
    assert count.tokens == count_tokens("hello world") + 6 + 85 + 8 * 170 and not count.exact


def test_very_long_texts_are_counted_in_pieces_never_failing():
    from coffee_nb.pricing._tokens import count_prompt

    text = "word " * 300_000  # 1.5 M characters: one encode call of this refuses ("too long to encode safely")
    assert 300_000 <= count_tokens(text, "o200k_base") <= 300_010  # a cut between pieces costs a token or two
    assert count_prompt([HumanMessage(text)], "o200k_base") > 300_000


def test_bound_and_estimate_cost_no_tokenizer():
    import subprocess
    import sys

    code = (
        "from coffee_nb.pricing._tokens import prompt_bound, estimate_prompt, _encoding\n"
        "from coffee_nb import AutoPicker, Budget, register_price\n"
        "from coffee_nb.testing import ScriptedChatModel\n"
        "register_price('fake/m', input=1, output=1)\n"
        "assert prompt_bound('héllo') >= estimate_prompt('héllo')\n"
        "llm = AutoPicker(ScriptedChatModel(model_name='m'), budget=Budget(total=100, ledger='memory'))\n"
        "for _ in range(3): llm.invoke('a prompt far from any window or limit')\n"
        "print(_encoding.cache_info().currsize)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"  # no encoding was loaded: nothing needed an exact count


def test_prompt_near_a_window_is_counted_exactly():
    from coffee_nb import AutoPicker, ModelSpec, capture_records
    from coffee_nb.testing import ScriptedChatModel

    text = "word " * 2000  # ~2 000 tokens, 10 000 bytes: the byte bound can't settle a 5 000-token window
    small = ModelSpec(model=ScriptedChatModel(model_name="small", script=["fits"]), context_window=5_000)
    with capture_records() as records:
        assert AutoPicker(small).invoke(text).content == "fits"
    assert records[0].outcome == "ok"
    tiny = ModelSpec(model=ScriptedChatModel(model_name="tiny"), context_window=1_000)
    big = ScriptedChatModel(model_name="big", script=["big one"])
    assert AutoPicker(tiny, [big]).invoke(text).content == "big one"
