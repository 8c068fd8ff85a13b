"""Freeze windows: when an app takes no deployments (pure: no Redis, no clock of its own).

An app's `freeze` lists windows in its `timezone` (UTC by default), each either weekly,
`"Fri 16:00 - Mon 08:00"` (it may wrap the week's end), or a range of dates,
`"2026-12-24 - 2026-12-27"` (its last day included). Every window starts inclusive and ends
exclusive, and is read on the wall clock of the app's zone: `Fri 16:00` is 16:00 local time also in
a week whose clocks change (zoneinfo places a wall time that a change skips after the change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Day names a weekly window takes, Monday first (as `datetime.weekday()` counts).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
#: A chain of windows that touch or overlap is followed at most this far to find where it ends.
MAX_CHAINED_WINDOWS = 64

_WEEKLY = re.compile(r"(?i)\s*([a-z]{3})\s+(\d{1,2}):(\d{2})\s+-\s+([a-z]{3})\s+(\d{1,2}):(\d{2})\s*")
_DATES = re.compile(r"\s*(\d{4}-\d{2}-\d{2})\s+-\s+(\d{4}-\d{2}-\d{2})\s*")


@dataclass(frozen=True)
class WeeklyWindow:
    """Minutes since Monday 00:00 of the start (inclusive) and the end (exclusive); end < start wraps."""

    text: str
    start: int
    end: int

    def contains(self, wall: datetime) -> bool:
        minute = minute_of_week(wall)
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def end_after(self, wall: datetime) -> datetime:
        """The wall time at which the window that holds `wall` ends."""
        ahead = (self.end - minute_of_week(wall)) % MINUTES_PER_WEEK
        return wall.replace(second=0, microsecond=0) + timedelta(minutes=ahead)


@dataclass(frozen=True)
class DateWindow:
    """From `first` 00:00 to the day after `last`, 00:00 (wall times)."""

    text: str
    first: date
    last: date

    def contains(self, wall: datetime) -> bool:
        return self.first <= wall.date() <= self.last

    def end_after(self, wall: datetime) -> datetime:
        del wall
        return datetime.combine(self.last + timedelta(days=1), time())


FreezeWindow = WeeklyWindow | DateWindow


def minute_of_week(wall: datetime) -> int:
    return wall.weekday() * MINUTES_PER_DAY + wall.hour * 60 + wall.minute


def parse_window(text: str) -> FreezeWindow:
    """A window from its config text; ValueError saying what a window looks like when it is not one."""
    weekly = _WEEKLY.fullmatch(text)
    if weekly:
        start = _weekly_minute(weekly.group(1), weekly.group(2), weekly.group(3), text)
        end = _weekly_minute(weekly.group(4), weekly.group(5), weekly.group(6), text)
        if start == end:
            raise ValueError(f"{text!r} starts where it ends: a weekly window must not be empty or the whole week")
        return WeeklyWindow(text, start, end)
    dates = _DATES.fullmatch(text)
    if dates:
        try:
            first, last = date.fromisoformat(dates.group(1)), date.fromisoformat(dates.group(2))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        if last < first:
            raise ValueError(f"{text!r} ends before it starts")
        return DateWindow(text, first, last)
    raise ValueError(f"expected a weekly window such as 'Fri 16:00 - Mon 08:00' or a date range such as "
                     f"'2026-12-24 - 2026-12-27', got {text!r}")


def _weekly_minute(day: str, hour: str, minute: str, text: str) -> int:
    if day.lower() not in WEEKDAYS:
        raise ValueError(f"{text!r}: unknown day {day!r} (one of {', '.join(d.title() for d in WEEKDAYS)})")
    h, m = int(hour), int(minute)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{text!r}: {hour}:{minute} is not a time of day (00:00 to 23:59)")
    return WEEKDAYS.index(day.lower()) * MINUTES_PER_DAY + h * 60 + m


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin' or 'UTC')") from None


@dataclass(frozen=True)
class Freeze:
    """An active freeze: the window that holds the moment, and when the freeze ends (aware, in the zone)."""

    window: str
    until: datetime


def frozen_at(windows: tuple[FreezeWindow, ...], tz: ZoneInfo, at: datetime) -> Freeze | None:
    """The freeze in force at the aware time `at`, or None.

    `until` is where the last of a chain of windows that touch or overlap ends, so it is the moment
    deploys resume. Wall times are compared in `tz`.
    """
    wall = at.astimezone(tz).replace(tzinfo=None)
    holding = next((w for w in windows if w.contains(wall)), None)
    if holding is None:
        return None
    end = holding.end_after(wall)
    for _ in range(MAX_CHAINED_WINDOWS):
        following = next((w for w in windows if w.contains(end)), None)
        if following is None:
            break
        end = following.end_after(end)
    until = end.replace(tzinfo=tz)
    if until <= at:  # a wall time the clocks pass twice: its second pass is the one ahead
        until = until.replace(fold=1)
    return Freeze(holding.text, until)


def describe(app: str, freeze: Freeze) -> str:
    """The sentence a held deployment's status shows: `deploys to shop are frozen until …`."""
    return (f"deploys to {app} are frozen until {freeze.until.strftime('%a %Y-%m-%d %H:%M %Z')} "
            f"(window {freeze.window})")
