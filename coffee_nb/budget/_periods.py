"""Calendar-aligned budget periods in a timezone: hour, day, ISO week, calendar month, and total."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from coffee_nb.errors._errors import ConfigError

__all__ = ["Period", "bucket", "period_window", "resolve_timezone"]


class Period(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    TOTAL = "total"  # never resets

    @classmethod
    def parse(cls, value: str | Period) -> Period:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(
                f"unknown budget period {value!r}: expected one of {', '.join(p.value for p in cls)}"
            ) from None


PERIODS = tuple(Period)
_UTC = ZoneInfo("UTC")


def resolve_timezone(tz: str | tzinfo | None) -> tzinfo:
    """``None`` → the machine's local zone; a name like ``"Europe/Paris"``; or a tzinfo."""
    if tz is None:
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigError(f"timezone must be an IANA name like 'Europe/Paris', a tzinfo or None, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {tz!r}: use an IANA name like 'Europe/Paris' or 'UTC'") from None


def _local_midnight(d: datetime, tz: tzinfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def period_window(period: Period, when: datetime, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` of the period containing ``when`` (aware), in ``tz``; (None, None) for total.

    Hours are real hours (a DST fall-back day has two distinct 01:00 hours); days, weeks and
    months start at local midnight, so a DST day lasts 23 or 25 hours.
    """
    if period is Period.TOTAL:
        return None, None
    local = when.astimezone(tz)
    if period is Period.HOURLY:
        start = local.replace(minute=0, second=0, microsecond=0)  # keeps ``fold`` on ambiguous hours
        # add the hour in UTC: wall-clock arithmetic would skip or repeat hours around DST changes
        return start, (start.astimezone(_UTC) + timedelta(hours=1)).astimezone(tz)
    if period is Period.DAILY:
        start = _local_midnight(local, tz)
        nxt = local.date() + timedelta(days=1)
    elif period is Period.WEEKLY:
        monday = local.date() - timedelta(days=local.weekday())
        start = datetime(monday.year, monday.month, monday.day, tzinfo=tz)
        nxt = monday + timedelta(days=7)
    else:  # MONTHLY
        start = datetime(local.year, local.month, 1, tzinfo=tz)
        nxt = (local.date().replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)


def bucket(period: Period, when: datetime, tz: tzinfo) -> str:
    """The ledger key of the period containing ``when``: unique per period instance."""
    if period is Period.TOTAL:
        return "total"
    start, _ = period_window(period, when, tz)
    assert start is not None
    if period is Period.HOURLY:
        # include the UTC offset: the two 01:00 hours of a fall-back night are different buckets
        return "h:" + start.isoformat(timespec="minutes")
    if period is Period.DAILY:
        return "d:" + start.date().isoformat()
    if period is Period.WEEKLY:
        year, week, _ = start.isocalendar()
        return f"w:{year}-W{week:02d}"
    return f"m:{start.year}-{start.month:02d}"
