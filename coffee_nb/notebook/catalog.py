"""``%llm_models``: every provider with example models, their keys, extras, windows and prices."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from coffee_nb.invoke._models import PROVIDERS, Candidate, parse_spec
from coffee_nb.notebook.tables import MISSING, Column, StyledFrame, count, styled, usd
from coffee_nb.providers._aliases import aliases, resolve
from coffee_nb.providers._base import installed
from coffee_nb.sandbox import MODELS as SANDBOX
from coffee_nb.session._settings import KNOWN_MODELS

if TYPE_CHECKING:
    from coffee_nb.pricing._pricing import Rate
    from coffee_nb.session._session import Session

__all__ = ["models_frame"]


def _rate(value: Rate) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else float(value.base)


def _price(value: Any, row: Any) -> str:
    return usd(value) if row.get("price_source") != "unpriced" else f"{MISSING} (unpriced)"


COLUMNS = {
    "model": Column("model"),
    "provider": Column("provider"),
    "alias": Column("alias"),
    "key": Column("key"),
    "extra": Column("extra"),
    "context_window": Column("window", count, right=True),
    "input_per_1M": Column("input / 1M", _price, right=True),
    "output_per_1M": Column("output / 1M", _price, right=True),
    "price_source": Column("prices from"),
}


def models_frame(session: Session, search: str | None = None) -> StyledFrame:
    """One row per model: the session's chain, well-known models and each provider's examples.
    ``search``: only rows whose model, provider, alias or price source holds it (any case)."""
    parse_spec("sandbox/fast")  # the registry's default entries load on first use
    named: dict[str, list[str]] = {}
    for name, target in aliases().items():
        named.setdefault(target, []).append(name)
    specs = [resolve(m) for m in session.chain()[0] if isinstance(m, str)] + list(KNOWN_MODELS) + list(named)
    for name, entry in PROVIDERS.items():
        examples = list(SANDBOX) if name == "sandbox" else list(entry.examples)
        specs += [f"{name}/{m}" for m in examples or ["<model>"]]
    rows = []
    for spec in dict.fromkeys(str(s) for s in specs):
        cand = Candidate(spec, cooldown_after=1, cooldown=0)
        provider = PROVIDERS[cand.provider]
        price = cand.facts.price
        rows.append(
            {
                "model": spec,
                "provider": cand.provider,
                "alias": ", ".join(named.get(spec, [])),
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
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).set_index("model")
    title = "coffee_nb models (prices in USD per 1M tokens)"
    notes: list[str] = []
    if search is not None and search.strip():
        needle = search.strip().lower()
        hay = frame.index.str.lower().to_series(index=frame.index)
        for col in ("provider", "alias", "price_source"):
            hay = hay + " " + frame[col].astype(str).str.lower()
        frame = frame[hay.str.contains(needle, regex=False)]
        title += f" matching {search.strip()!r}"
        if frame.empty:
            notes.append(f"no model, provider or alias holds {search.strip()!r}; %llm_models lists them all")
    return styled(frame, title, COLUMNS, notes=notes)
