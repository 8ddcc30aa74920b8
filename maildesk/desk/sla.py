"""SLA policies and clocks: due times, warnings, breaches, and when reminders are due.

Pure: no database, no network, no I/O.  Business time comes from
``desk/calendars.py``; the service's scheduler asks this module and enqueues.

**Policies** (``[[sla_policies]]``, ``SlaPolicyConfig``): up to three targets,
each a duration of business time on the policy's calendar:

- ``first_response``: from the ticket's opening until the first agent reply;
- ``next_response``: from each customer reply until the next agent reply;
- ``resolution``: from the opening until the ticket is solved.

A duration is ``"90m"``, ``"4h"``, ``"2d"`` or a sum such as ``"1d4h"`` or
``"1h30m"``.  **"1d" is one business day of the calendar: its
``business_day``, by default the longest day of its weekly hours** (8 h on a
Mon-Fri 09:00-17:00 calendar, also when Friday is shorter; 24 h on ``24x7``).
So "2d" is 16 business hours on such a calendar: opened Tuesday 10:00, due
Thursday 10:00; opened Thursday 10:00 on a calendar whose Friday has 6.5 h,
due Monday 11:30.  A fixed length keeps a target one timedelta, which pauses,
``warn_at`` and ``between`` need.

**Clocks**: a ``Target`` is one running target of one ticket: when it
started, its duration, the calendar-independent pauses (the ticket was
``pending``), and when it stopped (the reply came, the ticket was solved).
``evaluate(target, calendar, now, warn_at)`` -> ``TargetState``:

- ``due_at``: pushed out by exactly the business time spent paused; None
  while a pause that began before the due time is still open (the clock
  stands still, nothing can be due);
- ``warning_at``: the same for ``warn_at`` x the duration;
- ``elapsed``, ``paused``, ``remaining`` (negative once overdue), all
  business time up to ``now`` (or the stop, if earlier);
- ``state``: "met" (stopped before due), "breached" (``now`` at or after
  ``due_at``, or stopped at or after it), "warning" (at or after
  ``warning_at``), else "ok".

**Reminders**: ``due_reminders(states, now)`` lists what the scheduler should
send now, at most one per target ("breach" once due, else "warning"), each
with a ``key`` to make sending it exactly-once; ``next_wakeup(states, now)``
is the earliest later instant at which some threshold is crossed, so the
scheduler sleeps until then.

**Config** (config.py calls these): ``CalendarConfig`` (in calendars.py),
``SlaPolicyConfig``, ``SlaConfig`` (``[sla.defaults]``: policy per priority)
and ``check_policies(policies, calendars, defaults)`` for the names they
share; errors are one line naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, Field, field_validator, model_validator

from maildesk.desk.calendars import ALWAYS_OPEN_NAME, Calendar, CalendarConfig, FrozenSection, as_utc
from maildesk.desk.rules import PRIORITIES

__all__ = [
    "TARGET_NAMES", "BusinessDuration", "Reminder", "SlaConfig", "SlaDefaults", "SlaPolicyConfig", "Target",
    "TargetState", "check_policies", "due_reminders", "evaluate", "next_wakeup", "parse_duration",
]

TARGET_NAMES = ("first_response", "next_response", "resolution")
OK, WARNING, BREACHED, MET = "ok", "warning", "breached", "met"
State = Literal["ok", "warning", "breached", "met"]
Threshold = Literal["warning", "breach"]

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


@dataclass(frozen=True)
class BusinessDuration:
    """A duration as written: business days (the calendar's ``business_day`` each) plus time."""

    days: int = 0
    time: timedelta = timedelta(0)

    def on(self, calendar: Calendar) -> timedelta:
        """The business time this is on ``calendar``."""
        return self.days * calendar.business_day + self.time


def parse_duration(text: str) -> BusinessDuration:
    """``"90m"``, ``"4h"``, ``"2d"``, ``"1d4h"``, ``"1h30m"``; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f'bad duration {text!r} (expected e.g. "90m", "4h", "2d" or "1h30m"; '
                         '"d" is a business day of the calendar)')
    days, hours, minutes = (int(group or 0) for group in match.groups())
    duration = BusinessDuration(days, timedelta(hours=hours, minutes=minutes))
    if duration == BusinessDuration():
        raise ValueError(f"bad duration {text!r}: must be more than zero")
    return duration


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


DurationText = Annotated[str, AfterValidator(_check_duration)]


class SlaPolicyConfig(FrozenSection):
    """One ``[[sla_policies]]`` table."""

    name: str = Field(min_length=1)
    calendar: str = ALWAYS_OPEN_NAME
    """A ``[[calendars]]`` name, or "24x7"."""
    first_response: DurationText | None = None
    next_response: DurationText | None = None
    resolution: DurationText | None = None
    warn_at: float = 0.75
    """The share of a target's duration after which a warning is due."""
    raise_priority: bool = True
    """Raise the ticket's priority one step when a target is breached."""

    @field_validator("warn_at")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"expected a fraction between 0 and 1 (exclusive), e.g. 0.75, got {value}")
        return value

    @model_validator(mode="after")
    def _some_target(self) -> SlaPolicyConfig:
        if all(getattr(self, name) is None for name in TARGET_NAMES):
            raise ValueError(f"policy {self.name!r} sets no target (give {', '.join(TARGET_NAMES)} or some)")
        return self

    def duration(self, target_name: str, calendar: Calendar) -> timedelta | None:
        """The business time of one target on ``calendar`` (the policy's), None if the policy has none."""
        if target_name not in TARGET_NAMES:
            raise ValueError(f"unknown SLA target {target_name!r} ({', '.join(TARGET_NAMES)})")
        text = getattr(self, target_name)
        return None if text is None else parse_duration(text).on(calendar)


class SlaDefaults(FrozenSection):
    """``[sla.defaults]``: the policy of a ticket that no rule and no queue gave one, by priority."""

    low: str | None = None
    normal: str | None = None
    high: str | None = None
    urgent: str | None = None

    def for_priority(self, priority: str) -> str | None:
        return getattr(self, priority) if priority in PRIORITIES else None


class SlaConfig(FrozenSection):
    """``[sla]``."""

    defaults: SlaDefaults = SlaDefaults()


def check_policies(
    policies: Sequence[SlaPolicyConfig],
    calendars: Sequence[CalendarConfig],
    defaults: SlaDefaults | None = None,
) -> None:
    """Raise ValueError (one line naming the key) for a name used twice or one that names nothing."""
    calendar_names = [calendar.name for calendar in calendars]
    for index, calendar in enumerate(calendars):
        if calendar_names.index(calendar.name) != index:
            raise ValueError(f"calendars[{index}].name: calendar {calendar.name!r} defined twice")
    known_calendars = [*calendar_names, ALWAYS_OPEN_NAME]
    policy_names = [policy.name for policy in policies]
    for index, policy in enumerate(policies):
        if policy_names.index(policy.name) != index:
            raise ValueError(f"sla_policies[{index}].name: policy {policy.name!r} defined twice")
        if policy.calendar not in known_calendars:
            raise ValueError(f"sla_policies[{index}].calendar: unknown calendar {policy.calendar!r} "
                             f"(calendars: {', '.join(known_calendars)})")
    if defaults is not None:
        for priority in PRIORITIES:
            name = defaults.for_priority(priority)
            if name is not None and name not in policy_names:
                raise ValueError(f"sla.defaults.{priority}: unknown SLA policy {name!r}"
                                 + (f" (policies: {', '.join(policy_names)})" if policy_names else ""))


Pause = tuple[datetime, datetime | None]
"""From when to when a clock stood still (the ticket was pending); end None: still paused."""


@dataclass(frozen=True)
class Target:
    """One SLA target of one ticket, as the caller reads it from the ticket's history."""

    name: str
    """"first_response", "next_response" or "resolution"."""
    policy: str
    started_at: datetime
    duration: timedelta
    """Business time (``SlaPolicyConfig.duration``)."""
    pauses: tuple[Pause, ...] = ()
    stopped_at: datetime | None = None
    ticket_id: Hashable = None
    """Whatever the caller needs to find the ticket again (its id)."""

    def __post_init__(self) -> None:
        as_utc(self.started_at, "started_at")
        if self.duration <= timedelta(0):
            raise ValueError(f"target {self.name!r}: duration must be positive, got {self.duration}")
        if self.stopped_at is not None and as_utc(self.stopped_at, "stopped_at") < as_utc(self.started_at):
            raise ValueError(f"target {self.name!r}: stopped_at is before started_at")
        for start, end in self.pauses:
            if end is not None and as_utc(end, "pause end") < as_utc(start, "pause start"):
                raise ValueError(f"target {self.name!r}: a pause ends before it starts ({start} to {end})")


@dataclass(frozen=True)
class TargetState:
    """A target's clock at one instant (``evaluate``)."""

    target: Target
    now: datetime
    due_at: datetime | None
    warning_at: datetime | None
    elapsed: timedelta
    paused: timedelta
    remaining: timedelta
    state: State
    is_paused: bool
    """A pause is open at ``now`` (and the target not stopped)."""


class Reminder(NamedTuple):
    """A reminder the scheduler should send now (``due_reminders``)."""

    target: Target
    threshold: Threshold
    at: datetime
    """When the threshold was crossed."""

    @property
    def key(self) -> str:
        """Unique per (ticket, target, start, threshold): the scheduler's exactly-once key."""
        target = self.target
        return f"{target.ticket_id}:{target.name}:{as_utc(target.started_at).isoformat()}:{self.threshold}"


def _merged_pauses(target: Target) -> list[tuple[datetime, datetime | None]]:
    """The pauses between the start and the stop, overlaps joined, in UTC, in order."""
    start = as_utc(target.started_at)
    stop = None if target.stopped_at is None else as_utc(target.stopped_at)
    merged: list[tuple[datetime, datetime | None]] = []
    for pause_start, pause_end in sorted(target.pauses, key=lambda pause: as_utc(pause[0])):
        begin = max(as_utc(pause_start), start)
        end = None if pause_end is None else as_utc(pause_end)
        if (end is not None and end <= begin) or (stop is not None and begin >= stop):
            continue
        if merged and (merged[-1][1] is None or begin <= merged[-1][1]):
            last_begin, last_end = merged[-1]
            merged[-1] = (last_begin, None if last_end is None or end is None else max(last_end, end))
        else:
            merged.append((begin, end))
    return merged


def _reached_at(target: Target, calendar: Calendar, business: timedelta,
                pauses: list[tuple[datetime, datetime | None]]) -> datetime | None:
    """When the running clock reaches ``business``; None if a pause still open stops it first."""
    cursor = as_utc(target.started_at)
    for pause_start, pause_end in pauses:
        reached = calendar.add(cursor, business)
        if reached <= pause_start:
            return reached
        business -= calendar.between(cursor, pause_start)
        if pause_end is None:
            return None
        cursor = pause_end
    return calendar.add(cursor, business)


def evaluate(target: Target, calendar: Calendar, now: datetime, warn_at: float = 0.75) -> TargetState:
    """The target's clock at ``now``, on ``calendar`` (the policy's)."""
    if not 0 < warn_at < 1:
        raise ValueError(f"warn_at must be between 0 and 1 (exclusive), got {warn_at}")
    now = as_utc(now, "now")
    stopped_at = None if target.stopped_at is None else as_utc(target.stopped_at)
    clock_end = now if stopped_at is None else min(now, stopped_at)
    start = as_utc(target.started_at)
    pauses = _merged_pauses(target)
    due_at = _reached_at(target, calendar, target.duration, pauses)
    warning_at = _reached_at(target, calendar, target.duration * warn_at, pauses)

    paused = sum((calendar.between(pause_start, clock_end if pause_end is None else min(pause_end, clock_end))
                  for pause_start, pause_end in pauses), timedelta(0))
    is_paused = clock_end == now and any(
        pause_start <= now and (pause_end is None or pause_end > now) for pause_start, pause_end in pauses)
    elapsed = calendar.between(start, clock_end) - paused

    if stopped_at is not None and stopped_at <= now:
        state: State = BREACHED if due_at is not None and stopped_at >= due_at else MET
    elif due_at is not None and now >= due_at:
        state = BREACHED
    elif warning_at is not None and now >= warning_at:
        state = WARNING
    else:
        state = OK
    return TargetState(target=target, now=now, due_at=due_at, warning_at=warning_at, elapsed=elapsed,
                       paused=paused, remaining=target.duration - elapsed, state=state, is_paused=is_paused)


def due_reminders(states: Iterable[TargetState], now: datetime) -> list[Reminder]:
    """What to send at ``now``: "breach" for a running target past its due time, else "warning"
    past its warning time (a warning is pointless once the breach is due). Stopped targets: none."""
    now = as_utc(now, "now")
    reminders = []
    for state in states:
        if state.target.stopped_at is not None and as_utc(state.target.stopped_at) <= now:
            continue
        if state.due_at is not None and state.due_at <= now:
            reminders.append(Reminder(state.target, "breach", state.due_at))
        elif state.warning_at is not None and state.warning_at <= now:
            reminders.append(Reminder(state.target, "warning", state.warning_at))
    return reminders


def next_wakeup(states: Iterable[TargetState], now: datetime) -> datetime | None:
    """The earliest instant after ``now`` at which a running target crosses a threshold;
    None if none will (all stopped, paused or past both)."""
    now = as_utc(now, "now")
    upcoming = [
        instant
        for state in states
        for instant in (state.warning_at, state.due_at)
        if instant is not None and instant > now
        and (state.target.stopped_at is None or as_utc(state.target.stopped_at) > instant)
    ]
    return min(upcoming, default=None)
