"""Business calendars: ``[[calendars]]`` validated at load, compiled into ``Calendar``.

Pure: no database, no network, no I/O (the ``holidays`` package carries its
data).  ``desk/sla.py`` builds the SLA clocks on top of this module.

A calendar is a time zone, weekly business hours (several spans a day
allowed: ``fri = "09:00-11:30,13:00-17:00"``) and holidays (a country, and
optionally a subdivision and categories, from the ``holidays`` package,
plus fixed dates: ``"2026-12-24"`` once, ``"12-24"`` every year).  The
built-in calendar ``24x7`` is always open.

Spans are wall-clock times in the calendar's zone, so a 09:00-17:00 day is
8 business hours on the days the clocks change too; business time itself is
real elapsed time (a 00:00-24:00 span on a spring-forward day lasts 23 hours).
A span boundary inside the hour a spring-forward skips is read with the
offset from before the change (Python's ``fold=0``).

``Calendar`` answers with aware datetimes in UTC, whatever zone it was given:

- ``add(start, business)``: when ``business`` of business time has passed
  since ``start``.  Never outside business hours, except exactly at the end
  of a span (Friday 16:30 + 30 min is Friday 17:00, not Monday 09:00); a
  start outside hours counts from the next opening; ``add(t, 0)`` is
  ``next_open(t)``.
- ``between(start, end)``: business time between two instants (zero when
  ``end`` is not after ``start``); ``between(t, add(t, d)) == d``.
- ``is_open(instant)`` (spans are half-open: closed at 17:00 sharp) and
  ``next_open(instant)`` (the instant itself when open).

Holidays are looked up once per calendar and year, when first needed.
"""

from __future__ import annotations

import re
from calendar import isleap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

__all__ = [
    "ALWAYS_OPEN", "ALWAYS_OPEN_NAME", "WEEKDAYS", "Calendar", "CalendarConfig", "FrozenSection",
    "HolidaysConfig", "WeeklyHours", "as_utc", "compile_calendars", "parse_hour_duration",
]

ALWAYS_OPEN_NAME = "24x7"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Keys of ``hours``, in the order of ``date.weekday()``."""
LONGEST_CLOSED_STRETCH = timedelta(days=400)
"""A calendar closed for longer than this from some instant is broken config, not a long holiday."""

_SPAN = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
_HOURS_AND_MINUTES = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?")
_ONE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EVERY_YEAR = re.compile(r"(\d{2})-(\d{2})")

Span = tuple[int, int]
"""Minutes after local midnight: start < end <= 1440."""


class FrozenSection(BaseModel):
    """Like ``config.Section`` (unknown keys are errors), and immutable. config.py imports
    this module, so this module cannot import ``Section`` from config.py."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def _minutes(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"bad span {text!r}: {hours}:{minutes} is not a time of day (00:00 to 24:00)")
    return value


def _parse_spans(value: Any) -> tuple[Span, ...]:
    """``"09:00-11:30,13:00-17:00"`` (or a list of such strings) -> sorted spans; touching spans join."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")] if value.strip() else []
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = [part.strip() for part in value]
    else:
        raise ValueError(f'expected spans such as "09:00-17:00" or "09:00-11:30,13:00-17:00", got {value!r}')
    spans: list[Span] = []
    for part in parts:
        match = _SPAN.fullmatch(part)
        if match is None:
            raise ValueError(f'bad span {part!r} (expected HH:MM-HH:MM, e.g. "09:00-17:00")')
        start, end = _minutes(*match.group(1, 2), part), _minutes(*match.group(3, 4), part)
        if start >= end:
            raise ValueError(f"bad span {part!r}: it ends before it starts (a span past midnight is "
                             '"22:00-24:00" on one day and "00:00-06:00" on the next)')
        spans.append((start, end))
    spans.sort()
    joined: list[Span] = []
    for start, end in spans:
        if joined and start < joined[-1][1]:
            raise ValueError(f"spans overlap: {_show(joined[-1])} and {_show((start, end))}")
        if joined and start == joined[-1][1]:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return tuple(joined)


def _show(span: Span) -> str:
    return "-".join(f"{minute // 60:02d}:{minute % 60:02d}" for minute in span)


Spans = Annotated[
    tuple[Span, ...],
    BeforeValidator(_parse_spans),
    PlainSerializer(lambda spans: ",".join(_show(span) for span in spans), return_type=str),
]


def parse_hour_duration(text: str) -> timedelta:
    """``"8h"``, ``"7h30m"``, ``"450m"`` -> a positive timedelta; ValueError otherwise."""
    match = _HOURS_AND_MINUTES.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f'bad duration {text!r} (expected hours and minutes, e.g. "8h" or "7h30m")')
    value = timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))
    if value <= timedelta(0) or value > timedelta(hours=24):
        raise ValueError(f"bad duration {text!r}: a business day is more than 0 and at most 24 hours")
    return value


def _check_business_day(text: str) -> str:
    parse_hour_duration(text)
    return text


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as \"Asia/Jakarta\" or \"UTC\")") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
"""An IANA time zone name (config.py's ``desk.timezone`` too)."""


class WeeklyHours(FrozenSection):
    """Business hours per weekday; a weekday left out is closed."""

    mon: Spans = ""
    tue: Spans = ""
    wed: Spans = ""
    thu: Spans = ""
    fri: Spans = ""
    sat: Spans = ""
    sun: Spans = ""

    def by_weekday(self) -> tuple[tuple[Span, ...], ...]:
        return tuple(getattr(self, day) for day in WEEKDAYS)


def _check_fixed_date(value: str) -> str:
    if _ONE_DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"bad date {value!r} (expected YYYY-MM-DD, or MM-DD for every year)") from None
        return value
    match = _EVERY_YEAR.fullmatch(value)
    if match is None:
        raise ValueError(f"bad date {value!r} (expected YYYY-MM-DD, or MM-DD for every year)")
    try:
        date(2024, int(match.group(1)), int(match.group(2)))  # a leap year: 02-29 is allowed
    except ValueError:
        raise ValueError(f"bad date {value!r}: no such day of the year") from None
    return value


class HolidaysConfig(FrozenSection):
    """The days a calendar is closed although its weekday has hours."""

    country: str | None = None
    """An ISO 3166 code known to the ``holidays`` package ("ID", "DE", "US")."""
    subdivision: str | None = None
    """A region of the country ("BY" for Bavaria); needs country."""
    categories: tuple[str, ...] | None = None
    """The package's categories for the country (default: public holidays; Indonesia's
    collective leave days are "government")."""
    dates: tuple[Annotated[str, AfterValidator(_check_fixed_date)], ...] = ()
    """"YYYY-MM-DD" closes one day; "MM-DD" closes that day every year."""

    @model_validator(mode="after")
    def _country_known(self) -> HolidaysConfig:
        if self.country is None:
            if self.subdivision is not None or self.categories is not None:
                raise ValueError("subdivision and categories need country")
            return self
        import holidays  # a large package: only calendars with a country pay for it

        try:
            holidays.country_holidays(self.country, subdiv=self.subdivision, categories=self.categories)
        except NotImplementedError:
            if self.subdivision is not None and self.country in holidays.list_supported_countries():
                raise ValueError(f"unknown subdivision {self.subdivision!r} of country {self.country!r}") from None
            raise ValueError(f"unknown country code {self.country!r} for holidays "
                             "(an ISO 3166 code such as \"ID\" or \"DE\")") from None
        except ValueError as exc:
            raise ValueError(f"categories: {exc}") from None
        return self


class CalendarConfig(FrozenSection):
    """One ``[[calendars]]`` table."""

    name: str = Field(min_length=1)
    timezone: TimeZoneName = "UTC"
    hours: WeeklyHours
    holidays: HolidaysConfig = HolidaysConfig()
    business_day: Annotated[str, AfterValidator(_check_business_day)] | None = None
    """How long "1d" in an SLA duration is ("8h"); default: the longest day of ``hours``."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == ALWAYS_OPEN_NAME:
            raise ValueError(f"{ALWAYS_OPEN_NAME!r} is the built-in always-open calendar; choose another name")
        return value

    @model_validator(mode="after")
    def _open_some_day(self) -> CalendarConfig:
        if not any(self.hours.by_weekday()):
            raise ValueError("hours: no business hours on any day (for a desk that never closes use "
                             f'calendar = "{ALWAYS_OPEN_NAME}")')
        return self


def as_utc(instant: datetime, what: str = "instant") -> datetime:
    """The same instant in UTC; ValueError for a naive datetime (``what`` names it)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} {instant.isoformat()} has no time zone (give an aware datetime)")
    return instant.astimezone(UTC)


@dataclass(frozen=True, eq=False)
class Calendar:
    """A compiled calendar; build it with ``Calendar.from_config`` or use ``ALWAYS_OPEN``."""

    name: str
    zone: ZoneInfo
    weekly: tuple[tuple[Span, ...], ...] = ((),) * 7
    country: str | None = None
    subdivision: str | None = None
    categories: tuple[str, ...] | None = None
    fixed_dates: frozenset[date] = frozenset()
    every_year: frozenset[tuple[int, int]] = frozenset()
    """(month, day) pairs closed every year."""
    business_day: timedelta = timedelta(hours=24)
    """The length of "1d" in SLA durations."""
    always_open: bool = False
    _closed_days_by_year: dict[int, frozenset[date]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: CalendarConfig) -> Calendar:
        weekly = config.hours.by_weekday()
        longest_day = max(sum(end - start for start, end in spans) for spans in weekly)
        every_year = frozenset((int(text[:2]), int(text[3:])) for text in config.holidays.dates if len(text) == 5)
        fixed = frozenset(date.fromisoformat(text) for text in config.holidays.dates if len(text) == 10)
        return cls(
            name=config.name, zone=ZoneInfo(config.timezone), weekly=weekly,
            country=config.holidays.country, subdivision=config.holidays.subdivision,
            categories=config.holidays.categories, fixed_dates=fixed, every_year=every_year,
            business_day=(parse_hour_duration(config.business_day) if config.business_day
                          else timedelta(minutes=longest_day)),
        )

    def closed_days(self, year: int) -> frozenset[date]:
        """The holidays of ``year`` (looked up once, then kept)."""
        known = self._closed_days_by_year.get(year)
        if known is None:
            days = {day for day in self.fixed_dates if day.year == year}
            for month, day in self.every_year:
                if (month, day) != (2, 29) or isleap(year):
                    days.add(date(year, month, day))
            if self.country is not None:
                import holidays

                days.update(holidays.country_holidays(self.country, subdiv=self.subdivision, years=year,
                                                      categories=self.categories))
            known = self._closed_days_by_year[year] = frozenset(days)
        return known

    def spans_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The business hours of one local date, as UTC instants (none on a holiday)."""
        spans = self.weekly[day.weekday()]
        if not spans or day in self.closed_days(day.year):
            return []
        return [(self._instant(day, start), self._instant(day, end)) for start, end in spans]

    def _instant(self, day: date, minute: int) -> datetime:
        if minute == 24 * 60:
            day, minute = day + timedelta(days=1), 0
        wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.zone)
        return wall.astimezone(UTC)

    def _open_from(self, instant: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The business hours from ``instant`` (UTC) on, in order, the first one cut at ``instant``."""
        day = instant.astimezone(self.zone).date() - timedelta(days=1)
        last_end = instant
        while True:
            for start, end in self.spans_on(day):
                start = max(start, last_end)
                if end > start:
                    yield start, end
                    last_end = end
            day += timedelta(days=1)
            if datetime.combine(day, time(), tzinfo=self.zone) - last_end > LONGEST_CLOSED_STRETCH:
                raise ValueError(f"calendar {self.name!r} is closed for more than "
                                 f"{LONGEST_CLOSED_STRETCH.days} days after {last_end.isoformat()}")

    def add(self, start: datetime, business: timedelta) -> datetime:
        """The instant at which ``business`` business time has passed since ``start``."""
        start = as_utc(start, "start")
        if business < timedelta(0):
            raise ValueError(f"business time to add is negative ({business})")
        if self.always_open:
            return start + business
        for span_start, span_end in self._open_from(start):
            if business <= span_end - span_start:
                return span_start + business
            business -= span_end - span_start
        raise AssertionError("unreachable: _open_from never ends")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time from ``start`` to ``end``; zero when ``end`` is not after ``start``."""
        start, end = as_utc(start, "start"), as_utc(end, "end")
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        total = timedelta(0)
        for span_start, span_end in self._open_from(start):
            if span_start >= end:
                break
            total += min(span_end, end) - span_start
        return total

    def next_open(self, instant: datetime) -> datetime:
        """``instant`` (in UTC) if the calendar is open then, else the next opening."""
        instant = as_utc(instant)
        if self.always_open:
            return instant
        return next(self._open_from(instant))[0]

    def is_open(self, instant: datetime) -> bool:
        """Whether ``instant`` is business time (a span's end is not: 17:00 sharp is closed)."""
        instant = as_utc(instant)
        return self.always_open or next(self._open_from(instant))[0] == instant


ALWAYS_OPEN = Calendar(name=ALWAYS_OPEN_NAME, zone=ZoneInfo("UTC"), always_open=True)
"""The built-in ``24x7`` calendar: every instant is business time, "1d" is 24 hours."""


def compile_calendars(configs: Sequence[CalendarConfig]) -> Mapping[str, Calendar]:
    """Every calendar by name, ``24x7`` included."""
    calendars = {config.name: Calendar.from_config(config) for config in configs}
    calendars[ALWAYS_OPEN_NAME] = ALWAYS_OPEN
    return calendars
