"""Warm start: right after ``%load_ext coffee_nb``, a background thread does what the first ``%%llm``
would otherwise wait for — importing LangChain and the provider SDK of the session's chain, opening
the budget ledger and the response cache, building the chain's clients, loading the token counter's
tables and starting the offline sandbox server when the chain uses it — so that a first answer asked a
few seconds later lands fast.

It never blocks ``%load_ext`` (a daemon thread), sends nothing anywhere (no model is called; the
sandbox listens on loopback only), and is harmless when no ``%%llm`` ever runs: every step is what the
first call would do anyway, and a step that fails is left for that call to report. The first call
does not wait for it: both take the same locks, so whichever gets there first does the work once.
``COFFEE_NB_WARM=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from coffee_nb.providers._aliases import resolve
from coffee_nb.session._session import get_session

__all__ = ["ENV", "STEPS", "last_thread", "warm_up"]

ENV = "COFFEE_NB_WARM"
log = logging.getLogger("coffee_nb")
_last: threading.Thread | None = None


def _imports() -> None:
    import langchain_core.messages  # noqa: F401  # lazy: langchain_core (loaded here, in the warm-up thread)

    import coffee_nb.invoke._invoker  # lazy: langchain_core
    import coffee_nb.invoke._streams  # lazy: langchain_core
    import coffee_nb.notebook.render  # noqa: F401  # lazy: %load_ext path


def _session_parts() -> None:
    session = get_session()
    session.budget.status()  # opens the ledger file (and creates it on a first run)
    session.cache  # noqa: B018 - the property opens the response cache


def _clients() -> None:
    from langchain_core.messages import HumanMessage  # lazy: langchain_core

    from coffee_nb.pricing._tokens import count_message_tokens  # lazy: %load_ext path

    picker = get_session().picker()  # the default chain's picker, kept for the first cell
    for cand in picker.candidates:
        try:
            cand.chat_model()  # imports the provider's SDK and builds its client: no request
        except Exception:
            log.debug("coffee_nb warm start: %s not built", cand.name, exc_info=True)
        if cand is picker.candidates[0]:
            count_message_tokens([HumanMessage("warm")], cand.provider, cand.model)  # the tokenizer's tables


def _sandbox() -> None:
    chain, _ = get_session().chain()
    if any(isinstance(m, str) and str(resolve(m)).startswith("sandbox/") for m in chain):
        from coffee_nb import sandbox  # lazy: %load_ext path

        sandbox.server()  # loopback only


# in order: the sandbox first (a thread of its own, it starts while the imports run)
STEPS: tuple[Callable[[], None], ...] = (_sandbox, _imports, _session_parts, _clients)


def _run(steps: tuple[Callable[[], None], ...]) -> None:
    for step in steps:
        try:
            step()
        except Exception:
            log.debug("coffee_nb warm start: %s failed", step.__name__, exc_info=True)


def warm_up(steps: tuple[Callable[[], None], ...] | None = None) -> threading.Thread | None:
    """Start warming in a daemon thread and return it (None when ``COFFEE_NB_WARM=0``)."""
    global _last
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    thread = threading.Thread(
        target=_run, args=(STEPS if steps is None else steps,), name="coffee_nb-warm", daemon=True
    )
    thread.start()
    _last = thread
    return thread


def last_thread() -> threading.Thread | None:
    """The most recent warm-up thread (for tests and benchmarks that wait for it)."""
    return _last
