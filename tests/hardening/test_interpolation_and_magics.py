"""What ``{...}`` in a ``%%llm`` cell may reach (a prompt leaves the machine), and the magic's edge cases:
lone surrogates, quoted option values."""

from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb.notebook.interpolate import ENVIRON, NOT_DEFINED, PRIVATE, SECRET, interpolate
from coffee_nb.testing import ScriptedChatModel

from .conftest import CANARY_OPENAI


class Kernelish:
    """Stands in for IPython's ``exit``: a public object whose private attributes lead to secrets."""

    def __init__(self) -> None:
        self.touched: list[str] = []
        self.public = "ok"

    @property
    def _ip(self):
        self.touched.append("_ip")  # reading it at all would be the leak
        return type("K", (), {"kernel": type("S", (), {"session": type("Key", (), {"key": b"HMAC-SECRET"})})})

    @property
    def broken(self):
        raise RuntimeError("the user's property failed\nwith a second line")


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("{exit._ip.kernel.session.key}", PRIVATE),
        ("{exit._ip}", PRIVATE),
        ("{exit.public._private}", PRIVATE),
        ("{__builtins__}", PRIVATE),
        ("{__name__}", PRIVATE),
        ("{os.environ['OPENAI_API_KEY']}", ENVIRON),
        ("{os.environ}", ENVIRON),
        ("{env['OPENAI_API_KEY']}", ENVIRON),
        ("{nowhere.attr}", NOT_DEFINED),
        ("{holder.key}", SECRET),
        ("{holder.bearer}", SECRET),
    ],
)
def test_what_a_prompt_may_not_reach_is_left_as_written_with_the_reason(canaries, field, reason):
    exit_ = Kernelish()
    ns = {
        "exit": exit_,
        "os": os,
        "env": os.environ,
        "__builtins__": __builtins__,
        "__name__": "__main__",
        "holder": type("H", (), {"key": f"my key is {CANARY_OPENAI[8:]}", "bearer": "Bearer abcdefgh12345678"})(),
    }
    text, unfilled = interpolate(f"say {field} please", ns)
    assert text == f"say {field} please"
    assert [(f"{{{u.field}}}", u.reason) for u in unfilled] == [(field, reason)]
    assert exit_.touched == []  # refused before any private attribute was read
    assert "HMAC-SECRET" not in text and CANARY_OPENAI not in text


def test_public_fields_still_fill():
    ns = {"exit": Kernelish(), "d": {"_key": 1, "k": [1, 2]}}
    assert interpolate("{exit.public} {d['_key']} {d['k'][-1]}", ns) == ("ok 1 2", [])


def test_an_exception_from_the_users_object_is_one_line_naming_the_field():
    with pytest.raises(UsageError) as info:
        interpolate("hello {obj.broken}", {"obj": Kernelish()})
    message = str(info.value)
    assert message == "{obj.broken} could not be filled: reading it raised RuntimeError: the user's property failed"


def test_in_a_cell_the_notice_says_why_and_nothing_secret_is_sent_or_cached(ip, canaries, tmp_path):
    ip.user_ns["exit_"] = Kernelish()
    ip.user_ns["os"] = os
    with capture_output() as cap:
        ip.run_cell_magic(
            "llm", "sandbox/echo --no-stream", "key {exit_._ip.kernel.session.key} env {os.environ['OPENAI_API_KEY']}"
        )
    sent = ip.user_ns["_"].text
    assert "{exit_._ip.kernel.session.key}" in sent and "{os.environ['OPENAI_API_KEY']}" in sent
    assert "private attributes are not interpolated" in cap.stderr
    assert "environment variables are not interpolated" in cap.stderr
    assert "is not defined here" not in cap.stderr
    cache = coffee_nb.get_session().cache.path
    assert CANARY_OPENAI.encode() not in cache.read_bytes()
    with pytest.raises(UsageError, match=r"^\{exit_.broken\} could not be filled"):
        ip.run_cell_magic("llm", "sandbox/echo", "{exit_.broken}")


# -- magic edge cases --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "cell"),
    [
        ("--chat", "hello \ud800 there"),
        ("--chat --no-stream", "\udfff"),
        ("", "lone \udc80 surrogate"),
        ("--system '\ud83d'", "fine cell"),
        ("--chat \ud800", "fine cell"),
    ],
)
def test_a_lone_surrogate_is_a_usage_error_saying_where(ip, line, cell):
    with pytest.raises(UsageError, match="lone surrogate"):
        ip.run_cell_magic("llm", f"sandbox/echo {line}", cell)


def test_a_lone_surrogate_in_llm_config_is_a_usage_error(ip):
    with pytest.raises(UsageError, match="lone surrogate"):
        ip.run_line_magic("llm_config", "--system '\ud800'")
    assert coffee_nb.get_session().system is None


def test_quoted_option_values_lose_their_quotes(ip):
    model = ScriptedChatModel(script=["fine"])
    coffee_nb.configure(models=[model])
    with capture_output():
        ip.run_cell_magic("llm", "--system 'Be kind' --no-stream --no-cache", "hi")
        ip.run_cell_magic("llm", '-s "Be \\"very\\" kind" --no-stream --no-cache', "hi again")
    assert model.calls[0]["messages"][0].content == "Be kind"
    assert model.calls[1]["messages"][0].content == 'Be "very" kind'
    ip.run_line_magic("llm_config", "--system 'Be terse, please'")
    assert coffee_nb.get_session().system == "Be terse, please"
