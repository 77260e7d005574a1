"""What an error box says: the error's lines as a person reads them, and advice that fits the cause.

A pure rate limit gets "wait and retry", not "check the keys"; a cell's ``--budget`` that is too small is
named as that, not as a total budget that "never resets"; keys are mentioned only for auth failures.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from coffee_nb._shared._format import money
from coffee_nb.errors._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CoffeeError,
    DeadlineExceededError,
    classify,
)

__all__ = ["advice", "box_lines", "cell_budget_message"]

# the budget's own message: "<label> budget of $X can't cover a call to M: spent $S, reserved $R, this call
# may cost up to $C; <resets>. Raise the limit, wait for the reset, or use a cheaper model."
_LIMIT = re.compile(
    r"^(?P<label>.+?) budget of \$(?P<amount>[\d.,]+(?:E-?\d+)?) can't cover a call to (?P<model>.+?): "
    r"spent \$(?P<spent>[\d.]+), reserved \$(?P<reserved>[\d.]+), this call may cost up to \$(?P<need>[\d.]+); "
    r"(?P<resets>.+?)\.(?: Raise the limit, wait for the reset, or use a cheaper model\.)?$"
)
_TAIL = " Raise the limit, wait for the reset, or use a cheaper model."
_SCIENTIFIC = re.compile(r"\$(\d+(?:\.\d+)?E-\d+)")  # a limit like Decimal("0.0000001") prints as $1E-7
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
    "capability": "Skipped: that model can't do what the call needs (e.g. continue a partial answer): add a "
    "model that can (ModelSpec(..., prefill=True)) or let the answer restart (Policy(stream_recovery='restart')).",
    "unknown": "An unexpected error: run the cell again; if it persists, the message above says what failed.",
}


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _plain(m: re.Match[str]) -> str:
    return money(Decimal(m[1]))


def cell_budget_message(message: str, cap: Decimal) -> str | None:
    """``message`` of a BudgetExceededError said as the cell's ``--budget`` when that is what refused
    (a ``total`` limit of exactly ``cap``); None when another budget refused."""
    out, any_cell = [], False
    for line in message.splitlines():
        m = _LIMIT.match(line.strip())
        if m and m["label"] == "total" and _amount(m["amount"]) == cap:
            any_cell = True
            out.append(
                f"this cell's --budget of {money(_amount(m['amount']))} can't cover a call to {m['model']}: "
                f"it may cost up to ${m['need']}"
            )
        else:
            out.append(line)
    return "\n".join(out) if any_cell else None


def box_lines(exc: BaseException) -> tuple[str, list[str]]:
    """The headline and the detail lines (attempts without their numbers: the box numbers them)."""
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    if isinstance(exc, BudgetExceededError):  # the advice line says what to do: not twice
        lines = [_SCIENTIFIC.sub(_plain, line.removesuffix(_TAIL)) for line in lines]
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
        amount, need = _amount(m["amount"]), _amount(m["need"])
        enough = _enough(amount, _amount(m["spent"]), _amount(m["reserved"]), need)
        raise_it = f"%llm_config --{period} {money(enough)[1:]}" if period and enough else "%llm_config"
        if amount is not None and need is not None and need > amount:  # waiting for the reset can't help
            return (
                f"Raise the limit ({raise_it}): this call alone may cost up to {money(need)}, more than the whole "
                f"{m['label']} limit of {money(amount)}; or lower the max tokens (-m), or pick a cheaper model."
            )
        if period == "total":
            return f"A total budget never resets: raise it ({raise_it}) or pick a cheaper model."
        when = m["resets"].removeprefix("resets at ").replace(" (in ", ", in ").removesuffix(")")
        return f"Raise the limit ({raise_it}), wait for the reset (at {when}), or pick a cheaper model."
    return "Raise the budget (%llm_config), or pick a cheaper model."


def _enough(
    amount: Decimal | None, spent: Decimal | None, reserved: Decimal | None, need: Decimal | None
) -> Decimal | None:
    """A round limit (1, 2 or 5 times a power of ten) at least twice ``amount`` that lets this call through."""
    if amount is None or amount <= 0:
        return None
    zero = Decimal(0)
    want = max(amount * 2, (spent or zero) + (reserved or zero) + (need or zero))
    for step in (1, 2, 5, 10):
        limit = Decimal(step).scaleb(want.adjusted())
        if limit >= want:
            return limit
    return want  # (unreachable: 10 × 10^adjusted exceeds any number with that exponent)
