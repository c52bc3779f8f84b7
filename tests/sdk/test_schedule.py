import doctest
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import skylift.schedule
from skylift.exception import InvalidError
from skylift.schedule import Cron, Period, add_months, next_fire_time

UTC = timezone.utc
NY = ZoneInfo("America/New_York")


def test_period_wire():
    assert Period(days=1, seconds=1.5)._to_wire() == {
        "kind": "period", "years": 0, "months": 0, "weeks": 0, "days": 1, "hours": 0, "minutes": 0,
        "seconds": 1.5}


def test_period_is_keyword_only():
    with pytest.raises(TypeError):
        Period(1)  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [{}, {"days": 0}, {"seconds": 0.0}])
def test_period_needs_positive_total(kwargs):
    with pytest.raises(InvalidError, match="positive interval"):
        Period(**kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"days": -1}, "days"), ({"hours": 1.5}, "hours"), ({"months": True}, "months"),
    ({"seconds": -1}, "seconds"), ({"seconds": float("inf")}, "seconds"), ({"minutes": "5"}, "minutes"),
])
def test_period_bad_fields(kwargs, name):
    with pytest.raises(InvalidError, match=name):
        Period(**kwargs)


def test_period_simple_intervals():
    t = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    assert Period(hours=1).next_after(t) == datetime(2024, 1, 2, 0, 30, tzinfo=UTC)
    assert Period(minutes=15).next_after(t) == t + timedelta(minutes=15)
    assert Period(weeks=1, days=1).next_after(t) == t + timedelta(days=8)
    assert Period(seconds=0.5).next_after(t) == t + timedelta(milliseconds=500)


def test_period_calendar_months_clamp():
    assert Period(months=1).next_after(datetime(2023, 1, 31, tzinfo=UTC)) == datetime(2023, 2, 28, tzinfo=UTC)
    assert Period(years=1).next_after(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(2025, 2, 28, tzinfo=UTC)
    nxt = Period(months=13).next_after(datetime(2024, 12, 15, tzinfo=UTC))
    assert nxt == datetime(2026, 1, 15, tzinfo=UTC)


def test_add_months_negative_and_year_wrap():
    assert add_months(datetime(2024, 3, 31), -1) == datetime(2024, 2, 29)
    assert add_months(datetime(2024, 11, 30), 3) == datetime(2025, 2, 28)


def test_period_days_keep_wall_clock_across_dst():
    t = datetime(2024, 3, 9, 9, 0, tzinfo=NY)  # the day before clocks spring forward
    nxt = Period(days=1).next_after(t)
    assert (nxt.hour, nxt.day) == (9, 10)
    assert nxt.timestamp() - t.timestamp() == 23 * 3600


def test_period_anchor_does_not_drift():
    anchor = datetime(2024, 1, 31, 9, tzinfo=UTC)
    w = Period(months=1)._to_wire()
    fire = anchor
    fires = []
    for _ in range(4):
        fire = next_fire_time(w, fire, anchor=anchor)
        fires.append(fire.date().isoformat())
    assert fires == ["2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_period_anchor_catches_up_after_downtime():
    anchor = datetime(2024, 1, 1, tzinfo=UTC)
    w = Period(hours=1)._to_wire()
    assert next_fire_time(w, datetime(2024, 1, 3, 5, 30, tzinfo=UTC), anchor=anchor) == datetime(
        2024, 1, 3, 6, tzinfo=UTC)
    assert next_fire_time(w, datetime(2024, 1, 3, 6, tzinfo=UTC), anchor=anchor) == datetime(
        2024, 1, 3, 7, tzinfo=UTC)
    # before the anchor, the anchor itself is next
    assert next_fire_time(w, datetime(2023, 12, 31, tzinfo=UTC), anchor=anchor) == anchor


def test_naive_is_utc():
    assert Period(hours=1).next_after(datetime(2024, 1, 1)) == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert Cron("0 * * * *").next_after(datetime(2024, 1, 1, 0, 10)) == datetime(2024, 1, 1, 1, tzinfo=UTC)


def test_cron_wire_and_normalized_spaces():
    assert Cron("  5  4 * * * ")._to_wire() == {"kind": "cron", "cron": "5 4 * * *", "timezone": "UTC"}
    assert Cron("0 9 * * 4", timezone="America/New_York")._to_wire()["timezone"] == "America/New_York"


@pytest.mark.parametrize("bad", ["", "* * * *", "* * * * * *", "61 * * * *", "* 24 * * *", "hello",
                                 "* * 32 * *", "@often"])
def test_cron_invalid_names_the_string(bad):
    with pytest.raises(InvalidError, match="Cron"):
        Cron(bad)


def test_cron_invalid_type():
    with pytest.raises(InvalidError):
        Cron(5)  # type: ignore[arg-type]


def test_cron_unknown_timezone():
    with pytest.raises(InvalidError, match="Mars/Olympus"):
        Cron("* * * * *", timezone="Mars/Olympus")


@pytest.mark.parametrize("alias", ["@daily", "@hourly", "@weekly", "@monthly", "@yearly"])
def test_cron_aliases(alias):
    Cron(alias)


def test_cron_next_is_strictly_after():
    c = Cron("*/15 * * * *")
    t = datetime(2024, 1, 1, 10, 15, tzinfo=UTC)
    assert c.next_after(t) == datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    assert c.next_after(t - timedelta(seconds=1)) == t


def test_cron_weekday():
    # 2024-01-01 is a Monday; "0 9 * * 4" is Thursday 09:00
    nxt = Cron("0 9 * * 4").next_after(datetime(2024, 1, 1, tzinfo=UTC))
    assert nxt == datetime(2024, 1, 4, 9, tzinfo=UTC)


def test_cron_timezone_follows_dst():
    c = Cron("0 6 * * *", timezone="America/New_York")
    winter = c.next_after(datetime(2024, 1, 10, tzinfo=UTC))
    summer = c.next_after(datetime(2024, 7, 10, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (11, 10)
    assert winter.tzinfo is UTC


def test_cron_runs_once_when_clocks_fall_back():
    c = Cron("30 1 * * *", timezone="America/New_York")
    first = c.next_after(datetime(2024, 11, 2, 12, tzinfo=UTC))
    second = c.next_after(first)
    assert first.astimezone(NY).day == 3
    assert second.astimezone(NY).day == 4


def test_cron_result_in_input_zone():
    t = datetime(2024, 1, 1, tzinfo=NY)
    assert Cron("0 12 * * *").next_after(t).tzinfo is NY


def test_next_fire_time_unknown_kind():
    with pytest.raises(ValueError):
        next_fire_time({"kind": "sometimes"}, datetime(2024, 1, 1, tzinfo=UTC))


def test_equality():
    assert Period(hours=1) == Period(minutes=0, hours=1)
    assert Cron("* * * * *") == Cron("*  * * * *")
    assert Cron("* * * * *") != Cron("* * * * *", timezone="Europe/Paris")
    assert "hours=1" in repr(Period(hours=1))
    assert "Europe/Paris" in repr(Cron("* * * * *", timezone="Europe/Paris"))


def test_docstring_examples():
    assert doctest.testmod(skylift.schedule).failed == 0
