"""Cost budgets: periods, hard or soft limits, two-phase enforcement, and the ledgers where spend lives."""

from __future__ import annotations

from coffee_nb.budget._budget import (
    Budget,
    BudgetEvent,
    BudgetStack,
    BudgetWarning,
    Lease,
    Limit,
    create_budget_enforcer,
    open_ledger,
)
from coffee_nb.budget._ledger import CallRow, Ledger, MemoryLedger
from coffee_nb.budget._periods import Period

__all__ = [
    "Budget",
    "BudgetEvent",
    "BudgetStack",
    "BudgetWarning",
    "CallRow",
    "Lease",
    "Ledger",
    "Limit",
    "MemoryLedger",
    "Period",
    "create_budget_enforcer",
    "open_ledger",
]
