"""How a ``%%llm`` cell ends when it doesn't simply answer: errors shown once, warnings as notices,
an interrupted call in one line.

**Errors shown once.** A cell that fails shows one error box and nothing else, yet still *fails*: the
kernel replies "error", so "Run All" stops there, as users expect from a cell whose answer later cells
may read. The duplicate came from raising after the box: IPython then printed the exception again (its
``_render_traceback_``) as a red block. Now the magic raises the exception marked as already shown, and
a handler registered with IPython's ``set_custom_exc`` (which records the error for the reply but prints
only what the handler prints) prints nothing for it. Any other exception of those classes is shown as
IPython would (a handler the user had registered still gets its exceptions). Python semantics are kept:
``run_cell_magic`` raises ``BudgetExceededError`` / ``AllModelsFailedError`` / a ``UsageError`` /
a ``KeyboardInterrupt`` as before.

**Warnings as notices.** A ``BudgetWarning`` raised during the cell still goes through ``warnings.warn``, so
a user's filters apply (``ignore`` hides it, ``error`` raises) and recorders get it; only its *display*
becomes a one-line notice under the answer instead of ``.../interactiveshell.py:2644: BudgetWarning: ...``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from coffee_nb._shared._format import money
from coffee_nb.errors._errors import CoffeeError

if TYPE_CHECKING:
    from coffee_nb._shared._records import CallRecord

__all__ = ["CellInterrupted", "RequestRefusedError", "charged", "shown", "warnings_as_notices"]

_SHOWN = "_coffee_nb_shown"  # set on an exception whose box is on screen


class RequestRefusedError(UsageError):
    """The provider refused the request itself (bad request, content filter): nothing to retry."""


class CellInterrupted(KeyboardInterrupt):
    """The user interrupted the call (Jupyter's interrupt, Ctrl-C); what was charged is in the message."""


_QUIET: tuple[type[BaseException], ...] = (CoffeeError, RequestRefusedError, CellInterrupted)


def shown(shell: Any, exc: BaseException) -> BaseException:
    """``exc``, marked as on screen already: the cell fails with it, and IPython prints nothing more."""
    _install(shell)
    setattr(exc, _SHOWN, True)
    return exc


def _install(shell: Any) -> None:
    if shell is None or getattr(shell, "_coffee_nb_quiet", False) or not hasattr(shell, "set_custom_exc"):
        return
    before: tuple[type[BaseException], ...] = tuple(getattr(shell, "custom_exceptions", ()) or ())
    previous = getattr(shell, "CustomTB", None)

    def handler(self: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        if getattr(value, _SHOWN, False):
            setattr(value, _SHOWN, False)  # shown once: raised again later, it shows as usual
            return []
        if before and isinstance(value, before) and previous is not None:
            return previous(etype, value, tb, tb_offset)  # the user's own handler
        self.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return []

    shell.set_custom_exc((*before, *_QUIET), handler)
    shell._coffee_nb_quiet = True


@contextmanager
def warnings_as_notices(said: list[str]) -> Iterator[None]:
    """Inside the block, budget warnings that pass the user's filters are collected in ``said`` (to show as
    notices) instead of printed with a file and line. Warnings being recorded (``catch_warnings(record=True)``,
    ``pytest.warns``) are left to the recorder."""
    from coffee_nb.budget import BudgetWarning  # lazy: %load_ext path

    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if getattr(impl, "__name__", "") != "_showwarnmsg_impl":  # someone records them: theirs, as they were
        yield
        return
    original = warnings.showwarning

    def show(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if issubclass(category, BudgetWarning):
            said.append(str(message))
            return
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = original


def charged(records: Sequence[CallRecord]) -> str:
    """What the attempts in ``records`` were charged, in words ("nothing charged", "$0.0012 charged")."""
    total = sum((r.cost for r in records if r.cost is not None), Decimal(0))
    unpriced = any(r.cost is None and (r.input_tokens or r.output_tokens) for r in records)
    if total:
        return f"{money(total)} charged" + (" (and unpriced tokens)" if unpriced else "")
    return "unpriced tokens charged" if unpriced else "nothing charged"
