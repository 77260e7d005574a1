"""Budgets together: ``BudgetStack`` (the session's budget and a per-cell cap, all must agree), and the seed
design's ``create_budget_enforcer`` factory."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from coffee_nb.budget._budget import Budget
from coffee_nb.budget._ledger import from_pico
from coffee_nb.budget._rules import DEFAULT_WARN_AT

__all__ = ["BudgetStack", "create_budget_enforcer"]


def create_budget_enforcer(
    daily_budget: float | None = None,
    monthly_budget: float | None = None,
    total_budget: float | None = None,
    hourly_budget: float | None = None,
    weekly_budget: float | None = None,
    hard_limit: bool = True,
    warning_threshold: float = DEFAULT_WARN_AT,
    **kwargs: Any,
) -> Budget:
    """The seed's factory: the same kind of object ``AutoPicker(..., budget=...)`` takes."""
    return Budget(
        hourly=hourly_budget,
        daily=daily_budget,
        weekly=weekly_budget,
        monthly=monthly_budget,
        total=total_budget,
        hard=hard_limit,
        warn_at=warning_threshold,
        **kwargs,
    )


class BudgetStack:
    """Several budgets enforced together (e.g. the session's and a per-cell cap): all must agree."""

    def __init__(self, *budgets: Any) -> None:
        self.budgets = [b for b in budgets if b is not None]

    def __repr__(self) -> str:
        return f"BudgetStack({', '.join(map(repr, self.budgets))})"

    def reserve(self, model: str, amount: Decimal | None) -> list[Any]:
        leases: list[Any] = []
        try:
            for budget in self.budgets:  # one by one: the except below releases what was reserved so far
                leases.append(budget.reserve(model, amount))  # noqa: PERF401
        except BaseException:
            for budget, lease in zip(self.budgets, leases, strict=False):
                budget.release(lease)
            raise
        return leases

    def commit(self, leases: list[Any], amount: Decimal | None) -> None:
        for budget, lease in zip(self.budgets, leases, strict=True):
            budget.commit(lease, amount)

    def release(self, leases: list[Any]) -> None:
        for budget, lease in zip(self.budgets, leases, strict=True):
            budget.release(lease)

    def reserve_pico(self, model: str, pico: int | None) -> list[Any]:
        return self.reserve(model, None if pico is None else from_pico(pico))

    def commit_pico(self, leases: list[Any], pico: int | None) -> None:
        self.commit(leases, None if pico is None else from_pico(pico))
