"""Calendar resets with an injectable clock: hour, day, ISO week, month, and a DST timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from coffee_nb import Budget, BudgetExceededError
from coffee_nb.budget._periods import Period, bucket, period_window

NY = ZoneInfo("America/New_York")


class Clock:
    def __init__(self, when: datetime) -> None:
        self.t = when.timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, when: datetime) -> None:
        self.t = when.timestamp()


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        ("hourly", datetime(2026, 3, 3, 10, 59, 59, tzinfo=NY), datetime(2026, 3, 3, 11, 0, 0, tzinfo=NY)),
        ("daily", datetime(2026, 3, 3, 23, 59, 59, tzinfo=NY), datetime(2026, 3, 4, 0, 0, 0, tzinfo=NY)),
        ("weekly", datetime(2026, 3, 8, 23, 59, tzinfo=NY), datetime(2026, 3, 9, 0, 0, tzinfo=NY)),  # Sun → Mon
        ("monthly", datetime(2026, 2, 28, 23, 59, tzinfo=NY), datetime(2026, 3, 1, 0, 0, tzinfo=NY)),
    ],
)
def test_period_resets_at_its_boundary(period, before, after):
    clock = Clock(before)
    budget = Budget(**{period: 1}, timezone="America/New_York", ledger="memory", clock=clock)
    budget.record("0.9", model="m")
    assert budget.spent(period) == Decimal("0.9")
    assert not budget.can_afford("0.2")
    clock.set(after - timedelta(seconds=1))
    assert budget.spent(period) == Decimal("0.9")
    clock.set(after)
    assert budget.spent(period) == 0 and budget.can_afford("0.2")
    assert budget.spent("total") == Decimal("0.9")  # total never resets


def test_day_boundary_is_local_midnight_not_utc():
    clock = Clock(datetime(2026, 6, 1, 23, 0, tzinfo=UTC))  # 19:00 on June 1st in New York
    budget = Budget(daily=1, timezone="America/New_York", ledger="memory", clock=clock)
    budget.record("0.5")
    clock.set(datetime(2026, 6, 2, 0, 30, tzinfo=UTC))  # past UTC midnight, still June 1st in New York
    assert budget.spent("daily") == Decimal("0.5")
    clock.set(datetime(2026, 6, 2, 4, 0, tzinfo=UTC))  # 00:00 June 2nd in New York
    assert budget.spent("daily") == 0


def test_dst_fall_back_has_two_one_oclock_hours():
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, an hour later
    assert first.astimezone(NY).hour == second.astimezone(NY).hour == 1
    assert bucket(Period.HOURLY, first, NY) != bucket(Period.HOURLY, second, NY)
    assert bucket(Period.DAILY, first, NY) == bucket(Period.DAILY, second, NY)
    start, end = period_window(Period.DAILY, first, NY)
    assert (end - start) == timedelta(hours=24) and end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=25)
    clock = Clock(first)
    budget = Budget(hourly=1, timezone=NY, ledger="memory", clock=clock)
    budget.record("1")
    assert not budget.can_afford("0.01")
    clock.set(second)
    assert budget.can_afford("0.5")


def test_dst_spring_forward_day_is_23_hours_and_hours_advance():
    day = datetime(2026, 3, 8, 12, tzinfo=NY)
    start, end = period_window(Period.DAILY, day, NY)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    h = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST; next hour is 03:00 EDT
    _, hour_end = period_window(Period.HOURLY, h, NY)
    assert hour_end.astimezone(NY).hour == 3 and hour_end.astimezone(UTC) == datetime(2026, 3, 8, 7, tzinfo=UTC)


def test_iso_weeks_and_year_edges():
    assert bucket(Period.WEEKLY, datetime(2026, 12, 31, 12, tzinfo=UTC), UTC) == "w:2026-W53"
    assert bucket(Period.WEEKLY, datetime(2027, 1, 4, 12, tzinfo=UTC), UTC) == "w:2027-W01"
    assert bucket(Period.MONTHLY, datetime(2026, 12, 31, 23, 59, tzinfo=UTC), UTC) == "m:2026-12"
    _, end = period_window(Period.MONTHLY, datetime(2026, 12, 15, tzinfo=UTC), UTC)
    assert end == datetime(2027, 1, 1, tzinfo=UTC)


def test_exceeded_message_says_period_limit_spent_reserved_and_reset():
    clock = Clock(datetime(2026, 5, 5, 21, 0, tzinfo=NY))
    budget = Budget(daily=1, timezone="America/New_York", ledger="memory", clock=clock)
    budget.record("0.75")
    held = budget.reserve("sandbox/fast", Decimal("0.2"))
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve("sandbox/fast", Decimal("0.1"))
    text = str(info.value)
    for part in (
        "daily budget of $1.00 ",
        "spent $0.75,",
        "reserved $0.20,",
        "up to $0.10;",
        "2026-05-06 00:00",
        "in 3h00m",
    ):
        assert part in text, (part, text)
    budget.release(held)
