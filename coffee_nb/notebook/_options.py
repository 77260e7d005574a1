"""Reading ``%%llm`` options: typed twins of IPython's magic decorators, a shell-like split of the line,
and the checks that turn bad input into a one-line ``UsageError``."""

from __future__ import annotations

import difflib
import hashlib
import shlex
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core import magic, magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics

from coffee_nb._shared._validate import MAX_USD, usd
from coffee_nb.errors._errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from IPython.core.interactiveshell import InteractiveShell

# private names: magics.py (and the other magic modules) import them from here
__all__ = [
    "ShellMagics",
    "_argument",
    "_cell_key",
    "_cell_magic",
    "_context_tokens",
    "_line_magic",
    "_magic_arguments",
    "_models",
    "_parse",
    "_positive_money",
    "_sendable",
]

_Method = TypeVar("_Method", bound=Callable[..., Any])


# IPython's magic decorators record the magic (or its option) and hand the method back unchanged, but
# they are unannotated (magic_arguments, argument) or typed as a union (line_magic, cell_magic): these
# typed twins say so once, so the decorated methods keep their signatures for the type checker.
def _magic_arguments() -> Callable[[_Method], _Method]:
    decorator: Callable[[_Method], _Method] = magic_arguments.magic_arguments()
    return decorator


def _argument(*args: Any, **kwargs: Any) -> Callable[[_Method], _Method]:
    decorator: Callable[[_Method], _Method] = magic_arguments.argument(*args, **kwargs)
    return decorator


def _line_magic(name: str) -> Callable[[_Method], _Method]:
    decorator: Callable[[_Method], _Method] = magic.line_magic(name)  # type: ignore[assignment]  # see above
    return decorator


def _cell_magic(name: str) -> Callable[[_Method], _Method]:
    decorator: Callable[[_Method], _Method] = magic.cell_magic(name)  # type: ignore[assignment]  # see above
    return decorator


def _parse(func: Callable[..., Any], line: str, *, keep_quotes: bool = False) -> argparse.Namespace:
    """The options of ``line``, split like a shell would: quotes group words and are removed
    (``--system 'Be kind'`` gives ``Be kind``). ``keep_quotes`` splits as IPython's own parser does,
    quotes kept, for a magic that tells quoted text from a name. Anything wrong is a ``UsageError``."""
    _sendable(line, "the options")
    parser = func.parser  # type: ignore[attr-defined]  # set by @magic_arguments
    try:
        if keep_quotes:
            namespace: argparse.Namespace = parser.parse_argstring(line)
            return namespace
        argv = shlex.split(line)
    except ValueError as exc:  # "No closing quotation", ...
        raise UsageError(f"could not read the options ({exc}); quote values that contain spaces") from None
    try:
        namespace = parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(_with_guess(str(exc), parser)) from None
    except SystemExit:  # argparse's own exit (e.g. -h): IPython's parser raises UsageError instead, but be sure
        raise UsageError(f"could not read the options {line!r}") from None
    return namespace


def _with_guess(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's "unrecognized arguments: --temprature 0.5", with "did you mean --temperature?" for each
    misspelt option, and the options the magic takes when no spelling is close."""
    if "unrecognized arguments:" not in message:
        return message
    known = sorted({o for o in parser._option_string_actions if o.startswith("--")})
    unknown = [w for w in message.split("unrecognized arguments:", 1)[1].split() if w.startswith("-")]
    if not unknown:
        return message  # stray words, not options: argparse's message says which
    said = []
    for word in unknown:
        option = word.split("=", 1)[0]
        close = difflib.get_close_matches(option, known, n=1, cutoff=0.7)
        said.append(f"unknown option {option}" + (f": did you mean {close[0]}?" if close else ""))
    if not all("did you mean" in s for s in said):
        said.append(f"the options are {', '.join(o for o in known if o != '--help')}")
    return "; ".join(said)


def _sendable(text: str, what: str) -> None:
    """Text that can't be encoded (a lone surrogate from a bad paste) can't be sent or stored: say where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{what} hold a character that can't be sent ({text[exc.start]!r} at position {exc.start}, a lone "
            "surrogate): delete it and type it again"
        ) from None


def _positive_money(text: str | None, option: str) -> Decimal | None:
    """An amount in USD (``0.50``, ``$2``) within what a budget takes; else a UsageError naming it."""
    if text is None:
        return None
    try:
        value = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise UsageError(f"{option} takes an amount in USD like 0.50, got {text!r}") from None
    try:
        return usd(option, value, unit="USD")
    except ConfigError:
        raise UsageError(f"{option} takes an amount in USD from 0 to {MAX_USD:,.0f}, got {text!r}") from None


def _context_tokens(value: int | None) -> int | None:
    """``--context-tokens N``: positive, and enough for a table's header and a few rows."""
    if value is None:
        return None
    if value < _MIN_CONTEXT_TOKENS:
        raise UsageError(
            f"--context-tokens must be at least {_MIN_CONTEXT_TOKENS} (a table's shape, columns and a few rows), "
            f"got {value}"
        )
    return value


_MIN_CONTEXT_TOKENS = 100


def _models(values: list[str]) -> list[str] | None:
    specs = [s.strip() for v in values for s in v.split(",") if s.strip()]
    if not specs:
        return None
    from coffee_nb.invoke._models import parse_spec  # lazy: %load_ext path

    for spec in specs:
        try:
            parse_spec(spec)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    return specs


def _cell_key(shell: Any, cell: str) -> str:
    """Which cell is running: the front end's cell id when it sends one, else the cell's text."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
        cell_id = (parent or {}).get("metadata", {}).get("cellId")
    except Exception:  # noqa: BLE001 - older kernels, other front ends
        cell_id = None
    if isinstance(cell_id, str) and cell_id:
        return cell_id
    return "text:" + hashlib.sha256(cell.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class ShellMagics(Magics):
    """Base of coffee_nb's magics classes: the shell they are registered with, never None."""

    @property
    def _shell(self) -> InteractiveShell:
        if self.shell is None:  # never, once registered through load_ipython_extension
            raise UsageError("coffee_nb's magics need an IPython shell")
        return self.shell
