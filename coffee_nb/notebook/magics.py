"""The ``%%llm`` cell magic and its line-magic companions."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core import magic, magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic_arguments import parse_argstring

from coffee_nb._cassette import CELL
from coffee_nb._errors import AllModelsFailedError, BudgetExceededError, ConfigError
from coffee_nb._session import FORMATS, KNOWN_MODELS, Session, get_session, money
from coffee_nb.notebook.interpolate import interpolate

if TYPE_CHECKING:
    import argparse

    from IPython.core.interactiveshell import InteractiveShell

    from coffee_nb._pricing import Rate
    from coffee_nb._session import Answer
    from coffee_nb.notebook.render import Table
    from coffee_nb.notebook.widgets import Dashboard

__all__ = ["LLMMagics"]

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


def _parse(func: Callable[..., Any], line: str) -> argparse.Namespace:
    try:
        namespace: argparse.Namespace = parse_argstring(func, line)
        return namespace
    except UsageError:
        raise
    except ValueError as exc:  # shlex: "No closing quotation", ...
        raise UsageError(f"could not read the options ({exc}); quote values that contain spaces") from None


def _positive_money(text: str | None, option: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise UsageError(f"{option} takes an amount in USD like 0.50, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"{option} takes an amount in USD >= 0, got {text!r}")
    return value


def _models(values: list[str]) -> list[str] | None:
    specs = [s.strip() for v in values for s in v.split(",") if s.strip()]
    if not specs:
        return None
    from coffee_nb._models import parse_spec

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
    return cell_id or "text:" + hashlib.sha256(cell.encode()).hexdigest()[:16]


@magics_class
class LLMMagics(Magics):
    @property
    def _shell(self) -> InteractiveShell:
        if self.shell is None:  # never, once registered through load_ipython_extension
            raise UsageError("coffee_nb's magics need an IPython shell")
        return self.shell

    @_magic_arguments()
    @_argument("models", nargs="*", help="models for this cell, in order (e.g. openai/gpt-4o-mini sandbox/fast)")
    @_argument("-s", "--system", default=None, help="system prompt for this cell")
    @_argument("-t", "--temperature", type=float, default=None, help="sampling temperature, 0 to 2")
    @_argument("-m", "--max-tokens", type=int, default=None, help="cap on output tokens")
    @_argument("-f", "--format", default="markdown", help=f"how to show the answer: {', '.join(FORMATS)}")
    @_argument("-o", "--out", default=None, help="store the answer object in this variable")
    @_argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming it")
    @_argument(
        "--chat", nargs="?", const="", default=None, help="keep a conversation (re-running a cell replaces its turn)"
    )
    @_argument("--no-cache", action="store_true", help="call the model even if this exact request was answered before")
    @_argument("--dry-run", action="store_true", help="show tokens, worst-case cost and budget left per model; no call")
    @_argument("--budget", default=None, help="a hard cap in USD for this cell, on top of the session budget")
    @_argument("--next-cell", action="store_true", help="with --format code: offer the code as the next cell")
    @_cell_magic("llm")
    def llm(self, line: str, cell: str) -> None:
        """Ask a language model; the cell body is the prompt.

        ``{name}``, ``{name.attr}``, ``{name[key]}``, ``{In[3]}`` and ``{Out[3]}`` are filled from the
        notebook's variables (``{{name}}`` keeps a literal ``{name}``). The answer streams into the cell,
        then shows with a footer: model, fallbacks, tokens, cost, latency, budget left. It is stored in
        ``_`` / ``Out`` (and ``-o VAR``) with the full message and attempt trace. An identical request
        is answered from the cache at $0 unless ``--no-cache``.
        """
        args = _parse(self.llm, line)
        if args.format not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
        if args.temperature is not None and not 0 <= args.temperature <= 2:
            raise UsageError(f"--temperature must be within 0 and 2, got {args.temperature}")
        if args.max_tokens is not None and args.max_tokens <= 0:
            raise UsageError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out needs a Python variable name, got {args.out!r}")
        cap = _positive_money(args.budget, "--budget")
        models = _models(args.models)
        prompt, unresolved = interpolate(cell, self._shell.user_ns)
        for name in unresolved:
            print(f"coffee_nb: {{{name}}} is not defined here; left as written.", file=sys.stderr)
        if not prompt.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%llm")
        session = get_session()
        chat = None
        if args.chat is not None:
            chat = args.chat or _cell_key(self.shell, cell)
        if args.dry_run:
            from IPython.display import display

            from coffee_nb.notebook.render import dry_run_table

            try:
                rows = session.dry_run(prompt, models=models, system=args.system, max_tokens=args.max_tokens, chat=chat)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
            display(dry_run_table(rows))
            return
        budget = None
        if cap is not None:
            from coffee_nb.budget import Budget

            budget = Budget(total=cap, ledger="memory", name="cell")
        from coffee_nb.notebook.render import AnswerView

        view = AnswerView(stream=not args.no_stream)
        cell_token = CELL.set(_cell_key(self.shell, cell))  # a cassette re-recording this cell replaces its entry
        try:
            answer = session.ask(
                prompt,
                models=models,
                system=args.system,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                cache=not args.no_cache,
                chat=chat,
                budget=budget,
                on_token=view.token if view.stream else None,
                on_restart=view.restart if view.stream else None,
                format=args.format,
            )
        except (BudgetExceededError, AllModelsFailedError) as exc:
            view.error(exc)
            raise  # "Run all" stops here; IPython prints the short _render_traceback_, not a wall
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:  # e.g. --format json and the answer isn't JSON
            view.text = ""
            raise UsageError(str(exc)) from None
        finally:
            CELL.reset(cell_token)
        view.final(answer)
        self._store(answer, args.out)
        if args.format == "code" and args.next_cell:
            from coffee_nb.notebook.render import _fenced

            self._shell.set_next_input(_fenced(answer.text)[1], replace=False)

    def _store(self, answer: Answer, out: str | None) -> None:
        ns = self._shell.user_ns
        if out:
            ns[out] = answer
        ns["_"] = answer
        count = getattr(self.shell, "execution_count", None)
        if isinstance(ns.get("Out"), dict) and count is not None:
            ns["Out"][count] = answer

    # -- line magics -------------------------------------------------------------------------------
    @_magic_arguments()
    @_argument("--models", default=None, help="default chain, comma-separated (e.g. openai/gpt-4o-mini,sandbox/fast)")
    @_argument("--system", default=None, help="default system prompt ('' clears it)")
    @_argument("--temperature", type=float, default=None)
    @_argument("--max-tokens", type=int, default=None)
    @_argument("--hourly", default=None, help="hourly budget in USD")
    @_argument("--daily", default=None, help="daily budget in USD")
    @_argument("--weekly", default=None, help="weekly budget in USD")
    @_argument("--monthly", default=None, help="monthly budget in USD")
    @_argument("--total", default=None, help="total budget in USD (never resets)")
    @_argument("--soft", action="store_true", help="budget limits warn instead of block")
    @_argument("--ledger", default=None, help="where spend lives: memory, sqlite, a path, or redis://host:port/db")
    @_argument("--cache", choices=["on", "off"], default=None, help="answer identical requests from the cache")
    @_line_magic("llm_config")
    def llm_config(self, line: str) -> Table:
        """Show the notebook session (models, budget, cache), or change it:
        ``%llm_config --models openai/gpt-4o-mini,sandbox/fast --daily 5``."""
        args = _parse(self.llm_config, line)
        session = get_session()
        limits = {
            p: _positive_money(getattr(args, p), f"--{p}") for p in ("hourly", "daily", "weekly", "monthly", "total")
        }
        try:
            session.configure(  # a limit of None: not given, left as it is
                models=args.models,
                system=args.system,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                hourly=limits["hourly"],
                daily=limits["daily"],
                weekly=limits["weekly"],
                monthly=limits["monthly"],
                total=limits["total"],
                hard=False if args.soft else None,
                ledger=args.ledger,
                cache=None if args.cache is None else args.cache == "on",
            )
        except (ConfigError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        return self._config_table(session)

    def _config_table(self, session: Session) -> Table:
        from coffee_nb.notebook.render import Table

        chain, notice = session.chain()
        budget = session.budget
        rows: list[list[Any]] = [
            ["models", " → ".join(str(m) for m in chain) + (" (offline sandbox: no API keys)" if notice else "")],
            ["system", session.system or "-"],
            ["temperature", session.temperature if session.temperature is not None else "model default"],
            ["max tokens", session.max_tokens or "model default"],
            [
                "budget",
                ", ".join(f"{r.label} {money(r.amount)}{'' if r.hard else ' (soft)'}" for r in budget.rules) or "none",
            ],
            ["ledger", repr(budget.ledger)],
            ["cache", "on" if session.cache_enabled else "off"],
        ]
        return Table(["setting", "value"], rows, title="coffee_nb session")

    @_line_magic("llm_models")
    def llm_models(self, line: str) -> Any:
        """Every provider with example models: key present? (names the variables, never a value), extra
        installed? (else the pip line), context window, prices (USD per 1M tokens)."""
        import pandas as pd

        from coffee_nb._models import PROVIDERS, Candidate, parse_spec
        from coffee_nb.providers._base import installed
        from coffee_nb.sandbox import MODELS as SANDBOX

        parse_spec("sandbox/fast")  # the registry's default entries load on first use
        session = get_session()
        specs = [m for m in session.chain()[0] if isinstance(m, str)] + list(KNOWN_MODELS)
        for name, entry in PROVIDERS.items():
            examples = list(SANDBOX) if name == "sandbox" else list(entry.examples)
            specs += [f"{name}/{m}" for m in examples or ["<model>"]]
        rows = []
        for spec in dict.fromkeys(specs):
            cand = Candidate(spec, cooldown_after=1, cooldown=0)
            provider = PROVIDERS[cand.provider]
            price = cand.facts.price
            rows.append(
                {
                    "model": spec,
                    "provider": cand.provider,
                    "key": provider.key_status(),
                    "extra": (
                        "installed"
                        if installed(provider.needs)
                        else f"pip install 'coffee_nb[{provider.extra or cand.provider}]'"
                    ),
                    "context_window": cand.context_window,
                    "input_per_1M": None if price is None else _rate(price.input),
                    "output_per_1M": None if price is None else _rate(price.output),
                    "price_source": "unpriced" if price is None else price.source,
                }
            )
        return pd.DataFrame(rows).set_index("model")

    @_line_magic("llm_budget")
    def llm_budget(self, line: str) -> Table:
        """Budget status per period: limit, spent, reserved, remaining, resets."""
        from coffee_nb.notebook.render import Table

        status = get_session().budget.status()
        rows = [
            [
                name,
                money(s["budget"]),
                money(s["spent"]),
                money(s["reserved"]),
                money(s["remaining"]),
                f"{s['percentage']:.1f}%",
                "hard" if s["hard"] else "soft",
                s["resets_at"].strftime("%Y-%m-%d %H:%M %Z") if s["resets_at"] else "never",
            ]
            for name, s in status.items()
        ]
        return Table(
            ["period", "limit", "spent", "reserved", "remaining", "used", "kind", "resets"],
            rows,
            title="coffee_nb budget",
        )

    @_line_magic("llm_costs")
    def llm_costs(self, line: str) -> Any:
        """Per-model calls, errors, tokens and cost this session (a pandas DataFrame)."""
        return get_session().metrics.summary()

    @_line_magic("llm_history")
    def llm_history(self, line: str) -> Any:
        """The last N attempts this session (default 20), newest last: ``%llm_history 50``."""
        try:
            n = int(line.strip() or 20)
        except ValueError:
            raise UsageError(f"%llm_history takes a number of rows, got {line.strip()!r}") from None
        if n <= 0:
            raise UsageError(f"%llm_history takes a positive number of rows, got {n}")
        df = get_session().metrics.to_dataframe()
        cols = [
            "started_at",
            "model",
            "role",
            "outcome",
            "error_class",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "latency_s",
            "cache_hit",
        ]
        return df[cols].tail(n).reset_index(drop=True)

    @_magic_arguments()
    @_argument("--all", action="store_true", help="also forget metrics, cache settings and the model chain")
    @_line_magic("llm_reset")
    def llm_reset(self, line: str) -> None:
        """Clear the ``--chat`` conversation (``--all``: reset the whole session)."""
        args = _parse(self.llm_reset, line)
        session = get_session()
        if args.all:
            session.reset()
            print("coffee_nb: session reset (chain, metrics, chat; the budget ledger keeps its spend).")
        else:
            n = len(session.conversation)
            session.conversation.clear()
            print(f"coffee_nb: conversation cleared ({n} exchange{'s' if n != 1 else ''}).")

    @_line_magic("llm_dashboard")
    def llm_dashboard(self, line: str) -> Dashboard:
        """The live dashboard: budget bars, latency histogram, cost table, counters, last calls."""
        from coffee_nb.notebook import dashboard

        return dashboard(display=False)


def _rate(value: Rate) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else float(value.base)
