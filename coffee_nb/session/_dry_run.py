"""``--dry-run``: what a prompt would cost on each model of the chain, before any call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._images import images_in
from coffee_nb._shared._paths import StorageError
from coffee_nb.pricing._tokens import count_message_tokens, images_tokens

if TYPE_CHECKING:
    from coffee_nb.session._interpolate import Prompt
    from coffee_nb.session._session import Session

__all__ = ["dry_run"]


def dry_run(
    session: Session,
    prompt: Prompt,
    *,
    models: Sequence[Any] | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    chat: str | None = None,
) -> list[dict[str, Any]]:
    """Per candidate: estimated input tokens, context window, worst-case cost, and budget left after
    (empty when the ledger can't be used). No call."""
    from coffee_nb.invoke._invoker import DEFAULT_OUTPUT_ESTIMATE, AutoPicker  # lazy: langchain_core

    chain = list(models) if models else session.chain()[0]
    picker = AutoPicker(chain[0], chain[1:])  # no budget: a dry run works even when the ledger can't be used
    messages = session.messages(prompt, system=system, chat=chat)
    cap = max_tokens or session.max_tokens
    try:
        status = session.budget.status()
    except StorageError:  # budget left unknown ("?"); %%llm --dry-run says why
        status = {}
    rows = []
    images = sum(1 for _ in images_in(messages))
    for cand in picker.candidates:
        count = count_message_tokens(messages, cand.provider, cand.catalog_model)
        image_tokens, image_exact = images_tokens(messages, cand.provider, cand.catalog_model)
        out_cap = cap or cand.max_output_tokens or DEFAULT_OUTPUT_ESTIMATE
        price = cand.facts.price
        worst = price.cost(count.tokens, out_cap) if price is not None else None
        window = cand.context_window
        rows.append(
            {
                "model": cand.name,
                "input_tokens": count.tokens,
                "exact": count.exact,
                "context_window": window,
                "fits": None if window is None else count.tokens + (cap or 0) <= window,
                "images": images,
                "image_tokens": image_tokens,
                "image_tokens_exact": image_exact,
                "vision": cand.vision if images else None,
                "max_output_tokens": out_cap,
                "worst_case_cost": worst,
                "price_source": price.source if price is not None else "unpriced",
                "budget_left_after": {
                    name: (s["remaining"] - worst if worst is not None else None) for name, s in status.items()
                },
            }
        )
    return rows
