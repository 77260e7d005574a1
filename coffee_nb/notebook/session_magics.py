"""The line magics of the notebook session: ``%llm_config``, ``%llm_models``, ``%llm_budget``,
``%llm_costs``, ``%llm_history``, ``%llm_reset``, ``%llm_dashboard``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import magics_class

from coffee_nb.errors._errors import ConfigError
from coffee_nb.notebook._options import ShellMagics, _argument, _line_magic, _magic_arguments, _parse, _positive_money
from coffee_nb.notebook.interpolate import ErrorLog
from coffee_nb.providers._aliases import aliases, check_alias, remove_alias, set_alias
from coffee_nb.session._session import get_session, money

if TYPE_CHECKING:
    from coffee_nb.notebook._dashboard import Dashboard
    from coffee_nb.notebook.render import Table
    from coffee_nb.notebook.tables import StyledFrame

__all__ = ["SessionMagics"]


@magics_class
class SessionMagics(ShellMagics):
    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        if shell is not None:
            ErrorLog.install(shell)  # {err} / {Err[n]} in prompts: each failing cell's exception

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
    @_argument(
        "--metrics",
        choices=["otel", "local"],
        default=None,
        help="otel: also export every call as OpenTelemetry GenAI spans and metrics; local: stop exporting",
    )
    @_line_magic("llm_config")
    def llm_config(self, line: str) -> StyledFrame:
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
                metrics=args.metrics,
            )
        except ImportError as exc:  # the otel extra is not installed: say how to get it, in one line
            raise UsageError(str(exc)) from None
        except (ConfigError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        from coffee_nb.notebook.tables import config_frame  # lazy: pandas

        return config_frame(session)

    @_magic_arguments()
    @_argument("--search", default=None, help="only models, providers or sources whose name holds this text")
    @_line_magic("llm_models")
    def llm_models(self, line: str) -> StyledFrame:
        """Every provider with example models: key present? (names the variables, never a value), extra
        installed? (else the pip line), context window, prices (USD per 1M tokens). ``--search gemini``
        keeps the rows whose model, provider or price source holds the text (any case)."""
        args = _parse(self.llm_models, line)
        from coffee_nb.notebook.catalog import models_frame  # lazy: pandas

        return models_frame(get_session(), args.search)

    @_line_magic("llm_budget")
    def llm_budget(self, line: str) -> Table:
        """Budget status per period: limit, spent, reserved, remaining, resets."""
        from coffee_nb.notebook.render import Table  # lazy: %load_ext path

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

    @_magic_arguments()
    @_line_magic("llm_costs")
    def llm_costs(self, line: str) -> StyledFrame:
        """Per-model calls, errors, tokens and cost this session, with a total: a pandas DataFrame (numbers
        stay numbers: ``cost_usd`` is a float, NaN for a model that only failed or is unpriced) shown
        formatted (``$0.00000038``)."""
        _parse(self.llm_costs, line)
        from coffee_nb.notebook.tables import costs_frame  # lazy: pandas

        return costs_frame(get_session().metrics.summary())

    @_magic_arguments()
    @_argument("rows", nargs="?", default="20", help="how many of the last attempts to show (default 20)")
    @_line_magic("llm_history")
    def llm_history(self, line: str) -> StyledFrame:
        """The last N attempts this session (default 20), newest last, with the start of each prompt:
        ``%llm_history 50``. A DataFrame (``started_at`` a UTC datetime, ``cost_usd`` a float) shown with
        local times to the second and money as ``$0.00000038``."""
        args = _parse(self.llm_history, line)
        try:
            n = int(args.rows)
            if n > 1_000_000:
                raise ValueError
        except ValueError:
            raise UsageError(f"%llm_history takes a number of rows, got {args.rows!r}") from None
        if n <= 0:
            raise UsageError(f"%llm_history takes a positive number of rows, got {n}")
        from coffee_nb.notebook.tables import history_frame  # lazy: pandas

        session = get_session()
        return history_frame(session.metrics.to_dataframe(), session.prompts, n)

    @_magic_arguments()
    @_argument("assignments", nargs="*", help="NAME=provider/model (or NAME provider/model) to set")
    @_argument("--remove", "-r", nargs="+", default=None, metavar="NAME", help="forget these aliases")
    @_line_magic("llm_alias")
    def llm_alias(self, line: str) -> StyledFrame:
        """Short names for models, usable anywhere a model spec is (``%%llm fast``, ``--models fast,smart``,
        ``%%llm_compare fast smart``): ``%llm_alias fast=openai/gpt-4o-mini`` sets one, ``%llm_alias``
        lists them, ``%llm_alias --remove fast`` forgets one. Kept until the kernel restarts."""
        from coffee_nb.notebook.tables import alias_frame  # lazy: pandas

        args = _parse(self.llm_alias, line)
        words = list(args.assignments)
        pairs: list[tuple[str, str]] = []
        if len(words) == 2 and "=" not in words[0] + words[1]:
            pairs.append((words[0], words[1]))  # NAME provider/model
        else:
            for word in words:
                name, sep, spec = word.partition("=")
                if not sep or not name.strip() or not spec.strip():
                    raise UsageError(
                        f"%llm_alias takes NAME=provider/model, like fast=openai/gpt-4o-mini, got {word!r}"
                    )
                pairs.append((name.strip(), spec.strip()))
        try:  # everything checked before anything changes
            for name in args.remove or []:
                if name not in aliases():
                    remove_alias(name)  # the error lists the aliases there are
            for name, spec in pairs:
                check_alias(name, spec)
            for name in args.remove or []:
                remove_alias(name)
            for name, spec in pairs:
                set_alias(name, spec)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        return alias_frame()

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
        from coffee_nb.notebook._dashboard import dashboard  # lazy: %load_ext path

        try:
            return dashboard(display=False)
        except ConfigError as exc:  # its budget bars need the ledger
            raise UsageError(str(exc)) from None
