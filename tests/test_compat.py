"""Every LangChain/LangSmith/pydantic internal coffee_nb reads is still where it expects it."""

from __future__ import annotations

import warnings

import pytest

from coffee_nb import AutoPicker
from coffee_nb.invoke import _compat, _fastpath
from coffee_nb.testing import ScriptedChatModel


def test_no_internal_has_moved():
    # Fails loudly after an upgrade that renames one: fix _compat.py, don't skip this.
    assert _compat.internals_missing() == []


def test_fast_path_switch():
    picker = AutoPicker(ScriptedChatModel())
    assert _fastpath.unobserved(picker, None, {})
    _fastpath.set_fast_path(False)
    try:
        assert not _fastpath.unobserved(picker, None, {})
        assert picker.invoke("hi").content == "ok"  # the slow path answers the same
    finally:
        _fastpath.set_fast_path(True)


def test_moved_internals_turn_the_fast_path_off_with_a_warning(monkeypatch):
    import langchain_core.globals as lc_globals

    monkeypatch.setattr(_compat, "_switches", None)
    monkeypatch.setattr(_compat, "_broken", None)
    monkeypatch.delattr(lc_globals, "_debug")
    with pytest.warns(RuntimeWarning, match="fast path is off"):
        assert _compat.nothing_listening(False) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _compat.nothing_listening(False) is False  # warned once
    assert any("_debug" in m for m in _compat.internals_missing())
    monkeypatch.undo()
    monkeypatch.setattr(_compat, "_switches", None)
    monkeypatch.setattr(_compat, "_broken", None)
    assert _compat.nothing_listening(False) is True
