"""The line magics of the notebook session: ``%llm_config``, ``%llm_models``, ``%llm_budget``,
``%llm_costs``, ``%llm_history``, ``%llm_reset``, ``%llm_dashboard``."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import magics_class

from coffee_nb._errors import ConfigError
from coffee_nb._session import KNOWN_MODELS, Session, get_session, money
from coffee_nb.notebook._options import ShellMagics, _argument, _line_magic, _magic_arguments, _parse, _positive_money

if TYPE_CHECKING:
    from coffee_nb._pricing import Rate
    from coffee_nb.notebook.render import Table
    from coffee_nb.notebook.widgets import Dashboard

__all__ = ["SessionMagics"]


@magics_class
class SessionMagics(ShellMagics):
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
