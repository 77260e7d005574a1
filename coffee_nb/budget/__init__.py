"""Cost budgets: periods, hard or soft limits, two-phase enforcement, and the ledgers where spend lives."""

from __future__ import annotations

from coffee_nb.budget._budget import Budget, BudgetEvent, BudgetWarning, Lease, Limit
from coffee_nb.budget._ledger import CallRow, Ledger, MemoryLedger
from coffee_nb.budget._open import open_ledger
from coffee_nb.budget._periods import Period
from coffee_nb.budget._stack import BudgetStack, create_budget_enforcer

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
