"""Schedules for deployed functions: `Period` (every so often) and `Cron` (a crontab line).

    @app.function(schedule=modal.Period(hours=4))
    @app.function(schedule=modal.Cron("0 6 * * *", timezone="America/New_York"))

Both turn into a wire dict (`_to_wire()`); the control plane's scheduler computes fire times from
that dict alone with `next_fire_time`, a pure function, so it never needs these classes.
"""

from __future__ import annotations

import abc
import calendar
import math
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from .exception import InvalidError

# Calendar-month lengths vary, so these only seed the search for the n-th fire time.
_APPROX_YEAR = timedelta(days=365.2425)
_APPROX_MONTH = timedelta(days=30.436875)

_CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


class Schedule(abc.ABC):
    """Base class of `Period` and `Cron`."""

    @abc.abstractmethod
    def _to_wire(self) -> dict[str, Any]:
        """The schedule as the control plane stores it."""

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (a naive `after` is taken as UTC)."""
        return next_fire_time(self._to_wire(), after)


class Period(Schedule):
    """Run a function every given interval, with calendar arithmetic like dateutil's relativedelta.

    `days=1` fires at the same wall-clock time every day and `months=1` on the same day of every
    month (the 31st becomes the last day of shorter months). Only `seconds` may be a float. The
    interval restarts from the deploy time on every deploy.

    Args:
        years: Whole years.
        months: Whole months.
        weeks: Whole weeks.
        days: Whole days.
        hours: Whole hours.
        minutes: Whole minutes.
        seconds: Seconds, possibly fractional.

    Example:
        >>> Period(hours=4).next_after(datetime(2024, 1, 1, 22, tzinfo=timezone.utc)).isoformat()
        '2024-01-02T02:00:00+00:00'
        >>> Period(months=1).next_after(datetime(2024, 1, 31, tzinfo=timezone.utc)).date().isoformat()
        '2024-02-29'
    """

    def __init__(
        self,
        *,
        years: int = 0,
        months: int = 0,
        weeks: int = 0,
        days: int = 0,
        hours: int = 0,
        minutes: int = 0,
        seconds: float = 0,
    ) -> None:
        fields = {"years": years, "months": months, "weeks": weeks, "days": days, "hours": hours,
                  "minutes": minutes}
        for name, value in fields.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidError(
                    f"Period({name}={value!r}): {name} must be an int (only seconds may be a float).")
            if value < 0:
                raise InvalidError(f"Period({name}={value}): {name} must not be negative.")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise InvalidError(f"Period(seconds={seconds!r}): seconds must be a finite number.")
        if seconds < 0:
            raise InvalidError(f"Period(seconds={seconds}): seconds must not be negative.")
        self.years, self.months, self.weeks, self.days = years, months, weeks, days
        self.hours, self.minutes, self.seconds = hours, minutes, seconds
        if not (years or months or weeks or days or hours or minutes or seconds):
            raise InvalidError(
                "Period() needs a positive interval, e.g. Period(hours=1) or Period(seconds=30).")

    def _to_wire(self) -> dict[str, Any]:
        return {"kind": "period", "years": self.years, "months": self.months, "weeks": self.weeks,
                "days": self.days, "hours": self.hours, "minutes": self.minutes,
                "seconds": float(self.seconds)}

    def __repr__(self) -> str:
        parts = [f"{k}={v}" for k, v in self._to_wire().items() if k != "kind" and v]
        return f"Period({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Period) and self._to_wire() == other._to_wire()

    def __hash__(self) -> int:
        return hash(tuple(self._to_wire().items()))


class Cron(Schedule):
    """Run a function on a cron schedule: "minute hour day-of-month month day-of-week".

    The fields are read in `timezone` (an IANA name, UTC by default), so "0 6 * * *" in
    America/New_York runs at 6 am there all year round. `@hourly`, `@daily`, `@weekly`, `@monthly`
    and `@yearly` are accepted too.

    Args:
        cron_string: A standard five-field crontab expression.
        timezone: IANA time zone the fields are read in.

    Example:
        >>> Cron("5 4 * * *").next_after(datetime(2024, 1, 1, tzinfo=timezone.utc)).isoformat()
        '2024-01-01T04:05:00+00:00'
    """

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        if not isinstance(cron_string, str):
            raise InvalidError(f"Cron({cron_string!r}): the cron string must be a str like \"0 9 * * 1\".")
        if not isinstance(timezone, str):
            raise InvalidError(f"Cron(timezone={timezone!r}): timezone must be an IANA name like \"UTC\".")
        self.cron_string = " ".join(cron_string.split())
        self.timezone = timezone
        _zone(timezone, cron_string)
        _check_cron(self.cron_string)

    def _to_wire(self) -> dict[str, Any]:
        return {"kind": "cron", "cron": self.cron_string, "timezone": self.timezone}

    def __repr__(self) -> str:
        if self.timezone == "UTC":
            return f"Cron({self.cron_string!r})"
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and self._to_wire() == other._to_wire()

    def __hash__(self) -> int:
        return hash((self.cron_string, self.timezone))


def _zone(name: str, cron_string: str = "") -> tzinfo:
    if name.upper() == "UTC":
        return timezone.utc
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        where = f"Cron({cron_string!r}, timezone={name!r})" if cron_string else f"timezone {name!r}"
        raise InvalidError(
            f"{where}: unknown time zone; use an IANA name like \"UTC\" or \"America/New_York\".") from exc


def _check_cron(cron_string: str) -> None:
    fields = cron_string.split()
    if len(fields) == 1 and fields[0].lower() in _CRON_ALIASES:
        return
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,\-?LW#]+", f) for f in fields):
        raise InvalidError(
            f"Cron({cron_string!r}): expected five fields \"minute hour day-of-month month day-of-week\", "
            "e.g. \"0 9 * * 1\" for 9 am every Monday (see https://crontab.guru).")
    from croniter import croniter

    if not croniter.is_valid(cron_string):
        raise InvalidError(
            f"Cron({cron_string!r}): not a valid cron expression; check each field's range "
            "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6), e.g. \"*/15 * * * *\".")


def _as_aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def add_months(dt: datetime, months: int) -> datetime:
    """`dt` moved by whole calendar months, clamping the day to the target month's length."""
    index = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(index, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return dt.replace(year=year, month=month + 1, day=day)


def _shift(start: datetime, wire: dict[str, Any], k: int) -> datetime:
    # Months first, then the fixed part, like relativedelta; wall-clock arithmetic in start's zone.
    months = (int(wire.get("years", 0)) * 12 + int(wire.get("months", 0))) * k
    fixed = timedelta(weeks=int(wire.get("weeks", 0)), days=int(wire.get("days", 0)),
                      hours=int(wire.get("hours", 0)), minutes=int(wire.get("minutes", 0)),
                      seconds=float(wire.get("seconds", 0)))
    return add_months(start, months) + fixed * k


def _approx_length(wire: dict[str, Any]) -> timedelta:
    return (_APPROX_YEAR * int(wire.get("years", 0)) + _APPROX_MONTH * int(wire.get("months", 0))
            + _shift(datetime(2000, 1, 1), {**wire, "years": 0, "months": 0}, 1) - datetime(2000, 1, 1))


def next_fire_time(wire: dict[str, Any], after: datetime, *, anchor: datetime | None = None) -> datetime:
    """The first fire time of a schedule (in wire form) strictly after `after`.

    Naive datetimes are taken as UTC; the result is timezone-aware, in `after`'s zone (UTC if naive).
    For a period, `anchor` (e.g. the deploy time) pins the series to `anchor + k * period` so month
    clamping never drifts (Jan 31 → Feb 29 → Mar 31); without it the result is `after + period`.

    Example:
        >>> start = datetime(2024, 1, 31, 9, tzinfo=timezone.utc)
        >>> w = Period(months=1)._to_wire()
        >>> next_fire_time(w, datetime(2024, 2, 29, 9, tzinfo=timezone.utc), anchor=start).date().isoformat()
        '2024-03-31'
    """
    after = _as_aware(after)
    kind = wire.get("kind")
    if kind == "period":
        if anchor is None:
            return _shift(after, wire, 1)
        anchor = _as_aware(anchor).astimezone(after.tzinfo)
        if anchor > after:
            return anchor
        step = _approx_length(wire)
        if step <= timedelta(0):
            raise ValueError(f"period schedule has no length: {wire}")
        k = max(1, int((after - anchor) / step))
        while _shift(anchor, wire, k) <= after:
            k += 1
        while k > 1 and _shift(anchor, wire, k - 1) > after:
            k -= 1
        return _shift(anchor, wire, k)
    if kind == "cron":
        return _next_cron(str(wire["cron"]), str(wire.get("timezone", "UTC")), after)
    raise ValueError(f"unknown schedule kind {kind!r} in {wire}")


def _next_cron(cron_string: str, zone_name: str, after: datetime) -> datetime:
    from croniter import croniter

    zone = _zone(zone_name)
    local = after.astimezone(zone)
    it = croniter(cron_string, local)
    nxt: datetime = it.get_next(datetime)
    # When clocks fall back, a wall-clock time happens twice; cron runs it once.
    while nxt.replace(tzinfo=None) == local.replace(tzinfo=None) or nxt <= after:
        nxt = it.get_next(datetime)
    return nxt.astimezone(after.tzinfo)
