"""SLA: calendars and business time, policies in the config, clocks with pauses, reminders."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from maildesk.config import _describe
from maildesk.desk.calendars import ALWAYS_OPEN, Calendar, CalendarConfig, compile_calendars
from maildesk.desk.sla import (
    BusinessDuration,
    SlaConfig,
    SlaPolicyConfig,
    Target,
    check_policies,
    due_reminders,
    evaluate,
    next_wakeup,
    parse_duration,
)

JAKARTA = ZoneInfo("Asia/Jakarta")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

ISSUE_EXAMPLE = """
[[calendars]]
name = "office"
timezone = "Asia/Jakarta"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-11:30,13:00-17:00" }
holidays = { country = "ID", dates = ["2026-12-24"] }

[[sla_policies]]
name = "standard"
calendar = "office"        # or "24x7"
first_response = "2h"
next_response = "4h"
resolution = "2d"
warn_at = 0.75
"""


class SlaSettings(BaseModel):
    """The SLA part of the config, checked the way config.py checks it."""

    model_config = ConfigDict(extra="forbid")
    calendars: list[CalendarConfig] = []
    sla_policies: list[SlaPolicyConfig] = []
    sla: SlaConfig = SlaConfig()

    @model_validator(mode="after")
    def _names(self) -> SlaSettings:
        check_policies(self.sla_policies, self.calendars, self.sla.defaults)
        return self


def load(text: str) -> SlaSettings:
    return SlaSettings.model_validate(tomllib.loads(text))


def error_of(text: str) -> str:
    """The one line config.py would print for this config."""
    with pytest.raises(ValidationError) as caught:
        load(text)
    return _describe(caught.value.errors()[0])


def calendar_toml(**keys: str) -> str:
    values = {"name": '"office"', "timezone": '"Asia/Jakarta"', "hours": '{ mon = "09:00-17:00" }'} | keys
    return "[[calendars]]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())


def policy_toml(**keys: str) -> str:
    values = {"name": '"standard"', "calendar": '"24x7"', "first_response": '"2h"'} | keys
    return "[[sla_policies]]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())


SETTINGS = load(ISSUE_EXAMPLE)
CALENDARS = compile_calendars(SETTINGS.calendars)
OFFICE = CALENDARS["office"]
STANDARD = SETTINGS.sla_policies[0]
BERLIN_DAYS = Calendar.from_config(CalendarConfig.model_validate({
    "name": "berlin", "timezone": "Europe/Berlin",
    "hours": {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
}))
BERLIN_ROUND_THE_CLOCK = Calendar.from_config(CalendarConfig.model_validate({
    "name": "berlin-all-day", "timezone": "Europe/Berlin",
    "hours": {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
}))
WEEKEND_SHIFTS = Calendar.from_config(CalendarConfig.model_validate({
    "name": "weekend", "timezone": "America/New_York",
    "hours": {"sat": "00:00-06:00,18:00-24:00", "sun": ["00:00-02:30", "22:00-24:00"], "wed": "12:00-12:01"},
    "holidays": {"country": "US", "dates": ["07-04"]},
}))


def jakarta(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=JAKARTA)


def berlin(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=BERLIN)


# --- the config ---------------------------------------------------------------

def test_the_issue_example_validates_as_written() -> None:
    office = SETTINGS.calendars[0]
    assert office.hours.fri == ((9 * 60, 11 * 60 + 30), (13 * 60, 17 * 60))
    assert office.hours.sat == ()
    assert office.holidays.country == "ID"
    assert STANDARD.calendar == "office" and STANDARD.warn_at == 0.75 and STANDARD.raise_priority is True
    assert STANDARD.duration("first_response", OFFICE) == 2 * HOUR
    assert STANDARD.duration("resolution", OFFICE) == 16 * HOUR


def test_the_effective_config_shows_hours_as_written() -> None:
    dumped = SETTINGS.model_dump(mode="json")
    assert dumped["calendars"][0]["hours"]["fri"] == "09:00-11:30,13:00-17:00"
    assert dumped["calendars"][0]["hours"]["sat"] == ""
    assert SlaSettings.model_validate(dumped) == SETTINGS


@pytest.mark.parametrize(("toml", "expected"), [
    (calendar_toml(hours='{ mon = "09:00-25:00" }'),
     "calendars.0.hours.mon: bad span '09:00-25:00': 25:00 is not a time of day (00:00 to 24:00)"),
    (calendar_toml(hours='{ tue = "9-17" }'), "calendars.0.hours.tue: bad span '9-17' (expected HH:MM-HH:MM"),
    (calendar_toml(hours='{ wed = "17:00-09:00" }'), "calendars.0.hours.wed: bad span '17:00-09:00': it ends"),
    (calendar_toml(hours='{ fri = "09:00-12:00,11:30-17:00" }'),
     "calendars.0.hours.fri: spans overlap: 09:00-12:00 and 11:30-17:00"),
    (calendar_toml(hours='{ monday = "09:00-17:00" }'), "calendars.0.hours.monday: unknown key"),
    (calendar_toml(hours="{}"), "calendars.0: hours: no business hours on any day"),
    (calendar_toml(timezone='"Asia/Jakrta"'), "calendars.0.timezone: unknown time zone 'Asia/Jakrta'"),
    (calendar_toml(holidays='{ country = "XX" }'), "calendars.0.holidays: unknown country code 'XX'"),
    (calendar_toml(holidays='{ country = "DE", subdivision = "ZZ" }'),
     "calendars.0.holidays: unknown subdivision 'ZZ' of country 'DE'"),
    (calendar_toml(holidays='{ country = "ID", categories = ["bank"] }'),
     "calendars.0.holidays: categories: Category is not supported: bank"),
    (calendar_toml(holidays='{ dates = ["2026-02-30"] }'), "calendars.0.holidays.dates.0: bad date '2026-02-30'"),
    (calendar_toml(holidays='{ dates = ["christmas"] }'), "calendars.0.holidays.dates.0: bad date 'christmas'"),
    (calendar_toml(holidays='{ region = "BY" }'), "calendars.0.holidays.region: unknown key"),
    (calendar_toml(name='"24x7"'), "calendars.0.name: '24x7' is the built-in always-open calendar"),
    (calendar_toml(business_day='"9x"'), "calendars.0.business_day: bad duration '9x'"),
    (calendar_toml() + calendar_toml(), "calendars[1].name: calendar 'office' defined twice"),
    (policy_toml(resolution='"2x"'), "sla_policies.0.resolution: bad duration '2x' (expected e.g."),
    (policy_toml(next_response='"0h"'), "sla_policies.0.next_response: bad duration '0h': must be more than zero"),
    (policy_toml(warn_at="1.0"), "sla_policies.0.warn_at: expected a fraction between 0 and 1"),
    (policy_toml(warn_at="0"), "sla_policies.0.warn_at: expected a fraction between 0 and 1"),
    (policy_toml(first_response='"1h"', respond="1"), "sla_policies.0.respond: unknown key"),
    ('[[sla_policies]]\nname = "empty"\n', "sla_policies.0: policy 'empty' sets no target"),
    (policy_toml(calendar='"ofice"'), "sla_policies[0].calendar: unknown calendar 'ofice' (calendars: 24x7)"),
    (policy_toml() + policy_toml(), "sla_policies[1].name: policy 'standard' defined twice"),
    (policy_toml() + '[sla.defaults]\nurgent = "premium"\n',
     "sla.defaults.urgent: unknown SLA policy 'premium' (policies: standard)"),
    ('[sla.defaults]\nsevere = "standard"\n', "sla.defaults.severe: unknown key"),
])
def test_each_config_error_is_one_line_naming_the_key(toml: str, expected: str) -> None:
    message = error_of(toml)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_holidays_may_name_a_region_and_categories_and_dates_every_year() -> None:
    settings_ = load(calendar_toml(holidays='{ country = "DE", subdivision = "BY", dates = ["12-24", "2026-12-31"] }')
                     + calendar_toml(name='"id-leave"', holidays='{ country = "ID", categories = ["public", "government"] }')
                     + policy_toml(calendar='"office"') + '[sla.defaults]\nnormal = "standard"\n')
    bavaria, leave = (Calendar.from_config(config) for config in settings_.calendars)
    closed_2026 = bavaria.closed_days(2026)
    assert {datetime(2026, 1, 6).date(), datetime(2026, 12, 24).date(), datetime(2026, 12, 31).date()} <= closed_2026
    assert datetime(2027, 12, 24).date() in bavaria.closed_days(2027)
    assert datetime(2027, 12, 31).date() not in bavaria.closed_days(2027)
    assert datetime(2026, 12, 24).date() in leave.closed_days(2026)  # Indonesia's collective leave ("government")
    assert settings_.sla.defaults.for_priority("normal") == "standard"
    assert settings_.sla.defaults.for_priority("urgent") is None


def test_durations() -> None:
    assert parse_duration("90m") == BusinessDuration(0, 90 * MINUTE)
    assert parse_duration("1d4h") == BusinessDuration(1, 4 * HOUR)
    assert parse_duration("1h30m").on(OFFICE) == 90 * MINUTE
    assert parse_duration("2d").on(ALWAYS_OPEN) == 48 * HOUR
    for bad in ("", "2x", "h", "4h2d", "1.5h", "-2h", "2 d"):
        with pytest.raises(ValueError, match="bad duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="unknown SLA target"):
        STANDARD.duration("first_reply", OFFICE)


# --- business time --------------------------------------------------------------

def test_friday_afternoon_plus_two_hours_is_monday_morning() -> None:
    assert OFFICE.add(jakarta(2026, 11, 27, 16, 30), 2 * HOUR) == jakarta(2026, 11, 30, 10, 30)


def test_across_a_holiday_the_due_time_moves_a_day_further() -> None:
    # Monday 2026-06-01 is Pancasila Day (Indonesian public holiday, from the holidays package)
    assert OFFICE.add(jakarta(2026, 5, 29, 16, 30), 2 * HOUR) == jakarta(2026, 6, 2, 10, 30)
    # Thursday 24 December is a fixed date of the calendar, Friday 25 is Christmas
    assert OFFICE.add(jakarta(2026, 12, 23, 16, 30), 2 * HOUR) == jakarta(2026, 12, 28, 10, 30)
    assert not OFFICE.is_open(jakarta(2026, 12, 24, 10, 0))
    assert not OFFICE.is_open(jakarta(2026, 12, 25, 10, 0))
    assert OFFICE.between(jakarta(2026, 12, 23, 9, 0), jakarta(2026, 12, 29, 9, 0)) == 16 * HOUR


def test_the_friday_lunch_break() -> None:
    assert OFFICE.add(jakarta(2026, 11, 27, 11, 0), HOUR) == jakarta(2026, 11, 27, 13, 30)
    assert OFFICE.add(jakarta(2026, 11, 27, 11, 0), 30 * MINUTE) == jakarta(2026, 11, 27, 11, 30)
    assert not OFFICE.is_open(jakarta(2026, 11, 27, 11, 30))
    assert OFFICE.is_open(jakarta(2026, 11, 27, 11, 29, 59))
    assert OFFICE.next_open(jakarta(2026, 11, 27, 12, 0)) == jakarta(2026, 11, 27, 13, 0)
    assert OFFICE.between(jakarta(2026, 11, 27, 0, 0), jakarta(2026, 11, 28, 0, 0)) == timedelta(hours=6, minutes=30)


def test_a_due_time_may_be_exactly_a_span_end_but_a_start_out_of_hours_waits_for_the_opening() -> None:
    assert OFFICE.add(jakarta(2026, 11, 27, 16, 30), 30 * MINUTE) == jakarta(2026, 11, 27, 17, 0)
    assert OFFICE.add(jakarta(2026, 11, 27, 17, 0), 2 * HOUR) == jakarta(2026, 11, 30, 11, 0)
    assert OFFICE.add(jakarta(2026, 11, 28, 10, 0), HOUR) == jakarta(2026, 11, 30, 10, 0)
    assert OFFICE.add(jakarta(2026, 11, 29, 10, 0), timedelta(0)) == jakarta(2026, 11, 30, 9, 0)
    assert OFFICE.add(jakarta(2026, 11, 30, 10, 0), timedelta(0)) == jakarta(2026, 11, 30, 10, 0)
    assert OFFICE.next_open(jakarta(2026, 11, 27, 17, 0)) == jakarta(2026, 11, 30, 9, 0)
    assert OFFICE.between(jakarta(2026, 11, 27, 16, 0), jakarta(2026, 11, 30, 10, 0)) == 2 * HOUR
    assert OFFICE.between(jakarta(2026, 11, 30, 10, 0), jakarta(2026, 11, 27, 16, 0)) == timedelta(0)


def test_answers_are_in_utc_whatever_zone_was_given() -> None:
    due = OFFICE.add(datetime(2026, 11, 27, 9, 30, tzinfo=UTC), 2 * HOUR)  # 16:30 in Jakarta
    assert due.tzinfo is UTC and due == datetime(2026, 11, 30, 3, 30, tzinfo=UTC)


def test_two_business_days_are_two_of_the_calendars_full_days() -> None:
    resolution = STANDARD.duration("resolution", OFFICE)
    assert OFFICE.add(jakarta(2026, 12, 1, 10, 0), resolution) == jakarta(2026, 12, 3, 10, 0)
    # Thursday 7 h + Friday's 6.5 h leave 2.5 h for Monday
    assert OFFICE.add(jakarta(2026, 12, 3, 10, 0), resolution) == jakarta(2026, 12, 7, 11, 30)
    seven_hour_days = Calendar.from_config(SETTINGS.calendars[0].model_copy(update={"business_day": "7h"}))
    assert parse_duration("2d").on(seven_hour_days) == 14 * HOUR


def test_the_always_open_calendar_is_plain_arithmetic() -> None:
    start = jakarta(2026, 11, 27, 16, 30)
    assert ALWAYS_OPEN.add(start, 2 * HOUR) == jakarta(2026, 11, 27, 18, 30)
    assert ALWAYS_OPEN.between(start, jakarta(2026, 11, 30, 10, 30)) == timedelta(days=2, hours=18)
    assert ALWAYS_OPEN.is_open(start) and ALWAYS_OPEN.next_open(start) == start
    assert CALENDARS["24x7"] is ALWAYS_OPEN


def test_spans_are_wall_clock_times_across_the_daylight_saving_changes() -> None:
    for sunday in (berlin(2026, 3, 29), berlin(2026, 10, 25)):  # spring forward, fall back
        day_after = sunday + timedelta(days=1)
        assert BERLIN_DAYS.between(sunday, day_after) == 8 * HOUR
        assert BERLIN_DAYS.add(sunday - timedelta(hours=8), 2 * HOUR) == sunday.replace(hour=10)
        assert BERLIN_DAYS.is_open(sunday.replace(hour=16, minute=59))
        assert not BERLIN_DAYS.is_open(sunday.replace(hour=17))
    assert BERLIN_DAYS.add(berlin(2026, 3, 28, 16, 0), 2 * HOUR) == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert BERLIN_DAYS.add(berlin(2026, 10, 24, 16, 0), 2 * HOUR) == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)


def test_business_time_is_real_time_when_a_span_covers_the_change() -> None:
    assert BERLIN_ROUND_THE_CLOCK.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * HOUR
    assert BERLIN_ROUND_THE_CLOCK.between(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 25 * HOUR
    assert BERLIN_ROUND_THE_CLOCK.add(berlin(2026, 3, 29, 1, 0), 2 * HOUR) == berlin(2026, 3, 29, 4, 0)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        OFFICE.add(datetime(2026, 11, 27, 16, 30), HOUR)
    with pytest.raises(ValueError, match="negative"):
        OFFICE.add(jakarta(2026, 11, 27, 16, 30), -HOUR)


def test_holidays_are_looked_up_once_per_year_when_first_needed() -> None:
    calendar = Calendar.from_config(SETTINGS.calendars[0])
    assert calendar._closed_days_by_year == {}
    assert calendar.add(jakarta(2026, 12, 31, 16, 0), 4 * HOUR) == jakarta(2027, 1, 4, 12, 0)  # 1 January closed
    assert sorted(calendar._closed_days_by_year) == [2026, 2027]
    assert calendar.closed_days(2026) is calendar.closed_days(2026)


def test_a_calendar_that_never_opens_says_so_instead_of_looping() -> None:
    closed_all_year = Calendar(name="never", zone=ZoneInfo("UTC"), weekly=((),) * 7)
    with pytest.raises(ValueError, match="closed for more than 400 days"):
        closed_all_year.add(datetime(2026, 1, 1, tzinfo=UTC), HOUR)


# --- clocks, pauses, states -----------------------------------------------------

def first_response(started_at: datetime, **fields: Any) -> Target:
    return Target(name="first_response", policy="standard", started_at=started_at,
                  duration=4 * HOUR, ticket_id=7, **fields)


def test_a_pause_over_the_weekend_pushes_the_due_time_by_the_paused_business_time() -> None:
    target = first_response(jakarta(2026, 11, 27, 16, 0),
                            pauses=((jakarta(2026, 11, 27, 16, 30), jakarta(2026, 11, 30, 10, 0)),))
    assert OFFICE.add(target.started_at, target.duration) == jakarta(2026, 11, 30, 12, 0)
    state = evaluate(target, OFFICE, jakarta(2026, 11, 30, 11, 0), warn_at=0.75)
    assert state.paused == timedelta(hours=1, minutes=30)  # Friday 16:30-17:00, Monday 09:00-10:00
    assert state.due_at == jakarta(2026, 11, 30, 13, 30)
    assert state.elapsed == timedelta(hours=1, minutes=30)
    assert state.remaining == timedelta(hours=2, minutes=30)
    assert state.warning_at == jakarta(2026, 11, 30, 12, 30)
    assert (state.state, state.is_paused) == ("ok", False)


def test_pauses_spanning_nights_overlapping_and_before_the_start_count_once() -> None:
    target = first_response(jakarta(2026, 11, 30, 16, 0), pauses=(
        (jakarta(2026, 11, 30, 12, 0), jakarta(2026, 11, 30, 16, 30)),  # began before the start
        (jakarta(2026, 11, 30, 16, 45), jakarta(2026, 12, 1, 9, 30)),   # over the night
        (jakarta(2026, 12, 1, 9, 0), jakarta(2026, 12, 1, 10, 0)),       # overlaps the one before
    ))
    state = evaluate(target, OFFICE, jakarta(2026, 12, 2, 9, 0))
    assert state.paused == timedelta(minutes=30 + 15 + 60)
    assert state.due_at == OFFICE.add(target.started_at, target.duration + state.paused)
    assert state.due_at == jakarta(2026, 12, 1, 13, 45)
    assert state.state == "breached" and state.remaining == -timedelta(hours=3, minutes=15)


def test_while_paused_the_clock_stands_still_and_nothing_is_due() -> None:
    target = first_response(jakarta(2026, 11, 30, 9, 0), pauses=((jakarta(2026, 11, 30, 11, 0), None),))
    monday, tuesday = (evaluate(target, OFFICE, now) for now in (jakarta(2026, 11, 30, 15, 0),
                                                                   jakarta(2026, 12, 1, 15, 0)))
    for state in (monday, tuesday):
        assert state.due_at is None and state.is_paused
        assert state.elapsed == 2 * HOUR and state.remaining == 2 * HOUR
        assert state.warning_at is None and state.state == "ok"
    assert tuesday.paused == 12 * HOUR  # Monday 11:00-17:00, Tuesday 09:00-15:00
    assert next_wakeup([monday], monday.now) is None
    assert due_reminders([monday], monday.now) == []


def test_a_pause_after_the_warning_keeps_the_warning() -> None:
    target = first_response(jakarta(2026, 11, 30, 9, 0), pauses=((jakarta(2026, 11, 30, 12, 30), None),))
    state = evaluate(target, OFFICE, jakarta(2026, 11, 30, 16, 0))
    assert state.warning_at == jakarta(2026, 11, 30, 12, 0) and state.due_at is None
    assert state.state == "warning" and state.is_paused


def test_states_from_ok_to_breached_and_met() -> None:
    started = jakarta(2026, 11, 30, 9, 0)
    target = first_response(started)
    at = {hour: evaluate(target, OFFICE, started.replace(hour=hour), warn_at=0.75).state
          for hour in (9, 11, 12, 13, 14)}
    assert at == {9: "ok", 11: "ok", 12: "warning", 13: "breached", 14: "breached"}
    met = first_response(started, stopped_at=started.replace(hour=12, minute=59))
    late = first_response(started, stopped_at=started.replace(hour=13))
    assert evaluate(met, OFFICE, started.replace(hour=16)).state == "met"
    assert evaluate(late, OFFICE, started.replace(hour=16)).state == "breached"
    stopped = evaluate(met, OFFICE, started + timedelta(days=3))
    assert stopped.elapsed == timedelta(hours=3, minutes=59) and stopped.remaining == MINUTE
    assert evaluate(met, OFFICE, started.replace(hour=12)).state == "warning"  # the stop is still ahead


def test_solved_while_pending_is_met() -> None:
    target = first_response(jakarta(2026, 11, 30, 9, 0), pauses=((jakarta(2026, 11, 30, 10, 0), None),),
                            stopped_at=jakarta(2026, 12, 7, 9, 0))
    state = evaluate(target, OFFICE, jakarta(2026, 12, 8, 9, 0))
    assert state.state == "met" and state.elapsed == HOUR and not state.is_paused


def test_targets_check_their_own_data() -> None:
    with pytest.raises(ValueError, match="duration must be positive"):
        first_response(jakarta(2026, 11, 30, 9, 0)).__class__(
            name="resolution", policy="standard", started_at=jakarta(2026, 11, 30, 9, 0), duration=timedelta(0))
    with pytest.raises(ValueError, match="stopped_at is before started_at"):
        first_response(jakarta(2026, 11, 30, 9, 0), stopped_at=jakarta(2026, 11, 30, 8, 0))
    with pytest.raises(ValueError, match="no time zone"):
        first_response(datetime(2026, 11, 30, 9, 0))
    with pytest.raises(ValueError, match="warn_at must be between 0 and 1"):
        evaluate(first_response(jakarta(2026, 11, 30, 9, 0)), OFFICE, jakarta(2026, 11, 30, 9, 0), warn_at=1.0)
    with pytest.raises(ValueError, match="a pause ends before it starts"):
        first_response(jakarta(2026, 11, 30, 9, 0),
                       pauses=((jakarta(2026, 11, 30, 11, 0), jakarta(2026, 11, 30, 10, 0)),))


def test_the_worked_example_of_the_readme() -> None:
    """Opened Wednesday 23 December 16:00 WIB, before the 24th (a fixed date) and Christmas."""
    opened = jakarta(2026, 12, 23, 16, 0)

    def target(name: str, **fields: Any) -> Target:
        return Target(name=name, policy="standard", started_at=opened, ticket_id=42,
                      duration=STANDARD.duration(name, OFFICE), **fields)

    first = evaluate(target("first_response"), OFFICE, jakarta(2026, 12, 28, 9, 0))
    assert (first.warning_at, first.due_at) == (jakarta(2026, 12, 28, 9, 30), jakarta(2026, 12, 28, 10, 0))
    resolution = evaluate(target("resolution"), OFFICE, jakarta(2026, 12, 28, 9, 0))
    assert (resolution.warning_at, resolution.due_at) == (jakarta(2026, 12, 29, 12, 0), jakarta(2026, 12, 29, 16, 0))
    pending = ((jakarta(2026, 12, 28, 11, 0), jakarta(2026, 12, 29, 10, 0)),)
    resumed = evaluate(target("resolution", pauses=pending), OFFICE, jakarta(2026, 12, 29, 10, 0))
    assert resumed.paused == 7 * HOUR and resumed.remaining == 13 * HOUR
    assert (resumed.warning_at, resumed.due_at) == (jakarta(2026, 12, 30, 11, 0), jakarta(2026, 12, 30, 15, 0))
    answered = evaluate(target("first_response", stopped_at=jakarta(2026, 12, 28, 9, 40)), OFFICE,
                        jakarta(2026, 12, 29, 10, 0))
    assert answered.state == "met"
    reminders = due_reminders([evaluate(target("first_response"), OFFICE, jakarta(2026, 12, 28, 9, 45))],
                              jakarta(2026, 12, 28, 9, 45))
    assert [reminder.key for reminder in reminders] == ["42:first_response:2026-12-23T09:00:00+00:00:warning"]


# --- reminders -------------------------------------------------------------------

def test_reminders_due_now_and_the_next_wakeup() -> None:
    started = jakarta(2026, 11, 30, 9, 0)
    quick = first_response(started)                                            # warns 12:00, due 13:00
    slow = Target(name="resolution", policy="standard", started_at=started, duration=16 * HOUR, ticket_id=7)
    answered = first_response(started, stopped_at=started.replace(hour=10))
    now = started.replace(hour=12, minute=30)
    states = [evaluate(target, OFFICE, now) for target in (quick, slow, answered)]
    reminders = due_reminders(states, now)
    assert [(reminder.target, reminder.threshold, reminder.at) for reminder in reminders] == [
        (quick, "warning", started.replace(hour=12))]
    assert reminders[0].key == "7:first_response:2026-11-30T02:00:00+00:00:warning"
    assert next_wakeup(states, now) == started.replace(hour=13)

    later = started.replace(hour=14)
    states = [evaluate(target, OFFICE, later) for target in (quick, slow, answered)]
    assert [(reminder.threshold, reminder.at) for reminder in due_reminders(states, later)] == [
        ("breach", started.replace(hour=13))]
    assert next_wakeup(states, later) == jakarta(2026, 12, 1, 13, 0)  # 0.75 x 16 h = 12 h: Tuesday 13:00
    assert next_wakeup(states, jakarta(2026, 12, 2, 10, 0)) is None
    assert due_reminders(states, jakarta(2026, 12, 2, 10, 0))[1].threshold == "breach"


def test_a_target_stopped_before_its_threshold_wakes_no_one() -> None:
    started = jakarta(2026, 11, 30, 9, 0)
    target = first_response(started, stopped_at=started.replace(hour=11, minute=30))
    state = evaluate(target, OFFICE, started.replace(hour=10))
    assert next_wakeup([state], state.now) is None
    assert due_reminders([state], started.replace(hour=13)) == []


# --- properties --------------------------------------------------------------------

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None)
CALENDARS_UNDER_TEST = st.sampled_from([OFFICE, BERLIN_DAYS, BERLIN_ROUND_THE_CLOCK, WEEKEND_SHIFTS, ALWAYS_OPEN])
INSTANTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))
DURATIONS = st.integers(min_value=0, max_value=120 * 3600 * 1000).map(
    lambda milliseconds: timedelta(milliseconds=milliseconds))


@PROPERTIES
@given(CALENDARS_UNDER_TEST, INSTANTS, DURATIONS)
def test_adding_business_time_and_measuring_it_back_agree(calendar: Calendar, start: datetime,
                                                          business: timedelta) -> None:
    assert calendar.between(start, calendar.add(start, business)) == business


@PROPERTIES
@given(CALENDARS_UNDER_TEST, INSTANTS, DURATIONS)
def test_due_times_are_in_business_hours_or_exactly_at_a_spans_end(calendar: Calendar, start: datetime,
                                                                    business: timedelta) -> None:
    due = calendar.add(start, business)
    assert due >= start
    just_before = due - timedelta(microseconds=1)
    assert calendar.is_open(due) or (business > timedelta(0) and calendar.is_open(just_before))


@PROPERTIES
@given(CALENDARS_UNDER_TEST, INSTANTS, DURATIONS, DURATIONS)
def test_adding_more_business_time_never_ends_earlier(calendar: Calendar, start: datetime,
                                                      one: timedelta, other: timedelta) -> None:
    shorter, longer = sorted((one, other))
    assert calendar.add(start, shorter) <= calendar.add(start, longer)


@PROPERTIES
@given(CALENDARS_UNDER_TEST, INSTANTS, st.lists(st.tuples(st.integers(0, 200), st.integers(1, 100)), max_size=4),
       st.integers(min_value=1, max_value=40))
def test_at_the_due_time_exactly_the_duration_has_run(calendar: Calendar, start: datetime,
                                                      pause_hours: list[tuple[int, int]], hours: int) -> None:
    pauses = tuple((start + offset * HOUR, start + (offset + length) * HOUR) for offset, length in pause_hours)
    target = Target(name="resolution", policy="p", started_at=start, duration=hours * HOUR, pauses=pauses)
    due = evaluate(target, calendar, start).due_at
    assert due is not None
    at_due = evaluate(target, calendar, due)
    assert at_due.elapsed == target.duration and at_due.state == "breached"
    assert calendar.between(start, due) == target.duration + at_due.paused
    assert evaluate(target, calendar, due - timedelta(microseconds=1)).state != "breached"
