"""What an error box says: the error's lines as a person reads them, and advice that fits the cause.

A pure rate limit gets "wait and retry", not "check the keys"; a cell's ``--budget`` that is too small is
named as that, not as a total budget that "never resets"; keys are mentioned only for auth failures.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from coffee_nb._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CoffeeError,
    DeadlineExceededError,
    classify,
)
from coffee_nb._format import money

__all__ = ["advice", "box_lines", "cell_budget_message"]

# the budget's own message: "<label> budget of $X can't cover a call to M: spent $S, reserved $R, this call
# may cost up to $C; <resets>. Raise the limit, wait for the reset, or use a cheaper model."
_LIMIT = re.compile(
    r"^(?P<label>.+?) budget of \$(?P<amount>[\d.,]+) can't cover a call to (?P<model>.+?): "
    r"spent \$(?P<spent>[\d.]+), reserved \$(?P<reserved>[\d.]+), this call may cost up to \$(?P<need>[\d.]+); "
    r"(?P<resets>.+?)\.(?: Raise the limit, wait for the reset, or use a cheaper model\.)?$"
)
_TAIL = " Raise the limit, wait for the reset, or use a cheaper model."
_NUMBERED = re.compile(r"^\s*\d+\.\s+")
_PERIODS = ("hourly", "daily", "weekly", "monthly", "total")

# one line of advice per cause, in the order causes are listed (an attempt's error class → advice)
_BY_CLASS = {
    "rate_limit": "Rate limited: wait a few seconds and run the cell again, or add a fallback model "
    "(e.g. sandbox/fast) to the chain.",
    "auth": "Check the API key of that provider (%llm_models shows which variables are set, never their values).",
    "not_found": "Check the model name: %llm_models lists the providers and example models.",
    "context_overflow": "The prompt is too long for that model: shorten it, or use a model with a larger "
    "context window (%llm_models shows them).",
    "content_filter": "The provider refused the content: rephrase the prompt, or try another model.",
    "bad_request": "The provider rejected the request: check the options (-t, -m, -s) and the prompt.",
    "timeout": "The model was too slow: run the cell again, give it more time (Policy(deadline=...)), "
    "or add a faster fallback.",
    "connection": "The provider could not be reached: check the network or its status page, then run the cell again.",
    "server": "The provider had an error on its side: run the cell again in a moment, or add a fallback model.",
    "cooldown": "Skipped while cooling down after repeated failures: wait for it to reopen (coffee_nb.health() "
    "shows when), or add another model.",
    "cost": "Skipped for costing more than allowed (max_cost / Policy(fallback_cost=...)): raise the limit or "
    "pick a cheaper model.",
    "unknown": "An unexpected error: run the cell again; if it persists, the message above says what failed.",
}


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def cell_budget_message(message: str, cap: Decimal) -> str | None:
    """``message`` of a BudgetExceededError said as the cell's ``--budget`` when that is what refused
    (a ``total`` limit of exactly ``cap``); None when another budget refused."""
    out, any_cell = [], False
    for line in message.splitlines():
        m = _LIMIT.match(line.strip())
        if m and m["label"] == "total" and _amount(m["amount"]) == cap:
            any_cell = True
            out.append(
                f"this cell's --budget of ${m['amount']} can't cover a call to {m['model']}: "
                f"it may cost up to ${m['need']}"
            )
        else:
            out.append(line)
    return "\n".join(out) if any_cell else None


def box_lines(exc: BaseException) -> tuple[str, list[str]]:
    """The headline and the detail lines (attempts without their numbers: the box numbers them)."""
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    if isinstance(exc, BudgetExceededError):  # the advice line says what to do: not twice
        lines = [line.removesuffix(_TAIL) for line in lines]
    return lines[0], [_NUMBERED.sub("", line).strip() for line in lines[1:]]


def advice(exc: BaseException) -> list[str]:
    """What to do about ``exc``, one line per distinct cause (none for errors that say it themselves)."""
    if isinstance(exc, BudgetExceededError):
        return [_budget_advice(str(exc))]
    if isinstance(exc, DeadlineExceededError):
        return ["Give the call more time (Policy(deadline=...)) or add a faster fallback model."]
    if isinstance(exc, AllModelsFailedError):
        causes = [r.error_class for r in exc.attempts if r.error_class]
        if not causes:
            return []
        out = []
        for cause in dict.fromkeys(causes):
            if cause == "budget":
                text = "\n".join(r.error_message or "" for r in exc.attempts if r.error_class == "budget")
                out.append(_budget_advice(text))
            else:
                out.append(_BY_CLASS.get(cause, _BY_CLASS["unknown"]))
        return list(dict.fromkeys(out))
    if isinstance(exc, CoffeeError):
        return []
    said = _BY_CLASS.get(classify(exc).error_class.value)  # a provider's refusal, raised as it came
    return [said] if said else []


def _budget_advice(message: str) -> str:
    if "this cell's --budget" in message:
        return "Give this cell a larger --budget, lower its max tokens (-m), or pick a cheaper model."
    if "no known price and this budget is strict" in message:
        return "Register the model's price (coffee_nb.register_price) or use a priced model."
    if "more than coffee_nb reserves for one call" in message:
        return "Lower the max tokens (-m) or check the model's price."
    for line in message.splitlines():
        m = _LIMIT.match(line.strip())
        if m is None:
            continue
        period = m["label"] if m["label"] in _PERIODS else None
        amount = _amount(m["amount"])
        raise_it = f"%llm_config --{period} {money(amount * 2)[1:]}" if period and amount else "%llm_config"
        if period == "total":
            return f"A total budget never resets: raise it ({raise_it}) or pick a cheaper model."
        return f"Raise the limit ({raise_it}), wait for the reset ({m['resets']}), or pick a cheaper model."
    return "Raise the budget (%llm_config), or pick a cheaper model."
