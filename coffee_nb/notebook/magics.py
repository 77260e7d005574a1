"""The ``%%llm`` cell magic and its line-magic companions."""

from __future__ import annotations

import keyword
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import magics_class

from coffee_nb._answer import AnswerError

# "x as x": re-exported for the other magic modules (map_magic), which import them from here
from coffee_nb._cassette import CELL
from coffee_nb._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CoffeeError,
    ConfigError,
    ErrorClass,
    classify,
)
from coffee_nb._session import FORMATS, KNOWN_MODELS, Session, get_session, money
from coffee_nb._validate import max_tokens, temperature
from coffee_nb.notebook._options import ShellMagics, _cell_key, _line_magic, _sendable
from coffee_nb.notebook._options import _argument as _argument
from coffee_nb.notebook._options import _cell_magic as _cell_magic
from coffee_nb.notebook._options import _magic_arguments as _magic_arguments
from coffee_nb.notebook._options import _models as _models
from coffee_nb.notebook._options import _parse as _parse
from coffee_nb.notebook._options import _positive_money as _positive_money
from coffee_nb.notebook.interpolate import interpolate

if TYPE_CHECKING:
    import argparse

    from coffee_nb._pricing import Rate
    from coffee_nb._session import Answer
    from coffee_nb.notebook.render import Table
    from coffee_nb.notebook.widgets import Dashboard

__all__ = ["LLMMagics"]


@magics_class
class LLMMagics(ShellMagics):
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
        _sendable(cell, "the cell")
        if args.format not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
        try:
            if args.temperature is not None:
                temperature(args.temperature, "--temperature")
            if args.max_tokens is not None:
                max_tokens(args.max_tokens, "--max-tokens")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"--out needs a Python variable name, got {args.out!r}")
        cap = _positive_money(args.budget, "--budget")
        models = _models(args.models)
        prompt, unfilled = interpolate(cell, self._shell.user_ns)
        for field, reason in unfilled:
            print(f"coffee_nb: {{{field}}} {reason}; left as written.", file=sys.stderr)
        if not prompt.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%llm")
        session = get_session()
        chat = None
        if args.chat is not None:
            chat = args.chat or _cell_key(self.shell, cell)
        if args.dry_run:
            self._dry_run(session, prompt, models, args, chat)
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
        except AnswerError as exc:  # e.g. --format json and the answer isn't JSON: paid for, so kept
            exc.answer.format = "text"
            view.final(exc.answer)
            self._store(exc.answer, args.out)
            raise UsageError(f"{str(exc).split(';')[0]}; shown as text, and kept in _ (and -o)") from None
        except CoffeeError as exc:  # a bad option, a ledger that can't be used (names the file), ...
            view.text = ""
            raise UsageError(str(exc)) from None
        except Exception as exc:
            failure = classify(exc)  # also takes any key out of it
            if failure.error_class is ErrorClass.UNKNOWN:
                raise  # not a provider's answer: a bug somewhere, its traceback helps
            # the provider refused the request itself (bad request, content filter): say so in one line
            view.error(exc)
            raise UsageError(f"{failure.error_class.value}: {type(exc).__name__}: {failure.message}") from None
        finally:
            CELL.reset(cell_token)
        view.final(answer)
        self._store(answer, args.out)
        if args.format == "code" and args.next_cell:
            from coffee_nb.notebook.render import _fenced

            self._shell.set_next_input(_fenced(answer.text)[1], replace=False)

    def _dry_run(
        self, session: Session, prompt: str, models: list[str] | None, args: argparse.Namespace, chat: str | None
    ) -> None:
        """Tokens, worst-case cost and budget left per model; works without the ledger (budget left: ?)."""
        from IPython.display import display

        from coffee_nb.notebook.render import dry_run_table

        try:
            session.budget.status()
        except ConfigError as exc:
            print(f"coffee_nb: budget left is unknown: {exc}", file=sys.stderr)
        try:
            rows = session.dry_run(prompt, models=models, system=args.system, max_tokens=args.max_tokens, chat=chat)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        display(dry_run_table(rows))

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
    @_argument("--base-url", default=None, help="server of openai-compatible/<model> specs (vLLM, LM Studio, ...)")
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
                base_url=args.base_url,
            )
        except (ConfigError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        return self._config_table(session)

    def _config_table(self, session: Session) -> Table:
        """The session's settings; a ledger that can't be opened is shown as such (the rest still works)."""
        from coffee_nb.notebook.render import Table

        chain, notice = session.chain()
        try:
            budget = session.budget
            limits = ", ".join(f"{r.label} {money(r.amount)}{'' if r.hard else ' (soft)'}" for r in budget.rules)
            ledger = repr(budget.ledger)
        except ConfigError as exc:
            limits, ledger = "unknown", f"can't be used: {exc}"
        rows: list[list[Any]] = [
            ["models", " → ".join(str(m) for m in chain) + (" (offline sandbox: no API keys)" if notice else "")],
            ["system", session.system or "-"],
            ["temperature", session.temperature if session.temperature is not None else "model default"],
            ["max tokens", session.max_tokens or "model default"],
            ["budget", limits or "none"],
            ["ledger", ledger],
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

        try:
            status = get_session().budget.status()
        except ConfigError as exc:  # the ledger can't be used: the message names the file and what to do
            raise UsageError(str(exc)) from None
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
            if n > 1_000_000:
                raise ValueError
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

        try:
            return dashboard(display=False)
        except ConfigError as exc:  # its budget bars need the ledger
            raise UsageError(str(exc)) from None


def _rate(value: Rate) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else float(value.base)
