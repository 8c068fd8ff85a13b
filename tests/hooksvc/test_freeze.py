"""Freeze windows: parsing, and "is this app frozen at T, and until when", by example and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hooksvc.config import Config
from hooksvc.errors import ConfigError
from hooksvc.freeze import (
    WEEKDAYS,
    DateWindow,
    FreezeWindow,
    WeeklyWindow,
    frozen_at,
    minute_of_week,
    parse_window,
    zone,
)
from tests.helpers.config import frozen_app, make_config

BERLIN = zone("Europe/Berlin")
#: A Monday, 00:00 (wall time).
MONDAY = datetime(2026, 12, 7)
#: Zones with clock changes in both hemispheres, a half-hour offset, and none.
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Adelaide", "Asia/Kolkata"])
MOMENTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))


@st.composite
def weekly_windows(draw: st.DrawFn) -> WeeklyWindow:
    start = draw(st.integers(0, 7 * 1440 - 1))
    end = draw(st.integers(0, 7 * 1440 - 1).filter(lambda e: e != start))

    def text(minute: int) -> str:
        day, rest = divmod(minute, 1440)
        return f"{WEEKDAYS[day].title()} {rest // 60:02d}:{rest % 60:02d}"

    return parse_window(f"{text(start)} - {text(end)}")  # type: ignore[return-value]


@st.composite
def date_windows(draw: st.DrawFn) -> DateWindow:
    first = draw(st.dates(min_value=datetime(2024, 1, 1).date(), max_value=datetime(2030, 12, 31).date()))
    last = first + timedelta(days=draw(st.integers(0, 20)))
    return parse_window(f"{first} - {last}")  # type: ignore[return-value]


WINDOWS = st.lists(st.one_of(weekly_windows(), date_windows()), min_size=1, max_size=4).map(tuple)


def config_with(tmp_path: Path, windows: str, timezone: str | None) -> Config:
    """`make_config` plus an app `cafe` with these `freeze` windows and `timezone` (None: left out)."""
    return make_config(tmp_path, extra=frozen_app(tmp_path, windows, timezone))


def wall_frozen(windows: tuple[FreezeWindow, ...], tz_name: str, at: datetime) -> bool:
    """The oracle: the wall clock of `at` in the zone, against each window's own definition."""
    wall = at.astimezone(zone(tz_name)).replace(tzinfo=None)
    for w in windows:
        if isinstance(w, DateWindow) and w.first <= wall.date() <= w.last:
            return True
        if isinstance(w, WeeklyWindow):
            m = minute_of_week(wall)
            if (w.start <= m < w.end) if w.start < w.end else (m >= w.start or m < w.end):
                return True
    return False


class TestParse:
    def test_weekly_window_wraps_the_week(self) -> None:
        """`Fri 16:00 - Mon 08:00` holds Saturday and Sunday, and ends exclusive at Monday 08:00."""
        w = parse_window("Fri 16:00 - Mon 08:00")
        assert w.contains(datetime(2026, 12, 12, 12, 0))  # a Saturday
        assert w.contains(datetime(2026, 12, 11, 16, 0))  # Friday 16:00, the start, included
        assert not w.contains(datetime(2026, 12, 14, 8, 0))  # Monday 08:00, the end, excluded
        assert not w.contains(datetime(2026, 12, 9, 12, 0))  # a Wednesday

    def test_date_range_includes_its_last_day(self) -> None:
        """`2026-12-24 - 2026-12-27` holds the whole 27th and ends at the 28th, 00:00."""
        w = parse_window("2026-12-24 - 2026-12-27")
        assert w.contains(datetime(2026, 12, 27, 23, 59))
        assert not w.contains(datetime(2026, 12, 28, 0, 0))
        assert not w.contains(datetime(2026, 12, 23, 23, 59))

    @pytest.mark.parametrize(("text", "message"), [
        ("Fri 16:00 - Fri 16:00", "starts where it ends"),
        ("Fry 16:00 - Mon 08:00", "unknown day 'Fry'"),
        ("Fri 25:00 - Mon 08:00", "not a time of day"),
        ("2026-12-27 - 2026-12-24", "ends before it starts"),
        ("2026-02-30 - 2026-03-02", "day is out of range"),
        ("weekends", "expected a weekly window such as 'Fri 16:00 - Mon 08:00'"),
    ])
    def test_bad_window_says_what_is_wrong(self, text: str, message: str) -> None:
        """Each malformed window is refused with what is wrong with it."""
        with pytest.raises(ValueError, match=message):
            parse_window(text)

    def test_config_names_the_key_of_a_bad_window_and_zone(self, tmp_path: Path) -> None:
        """A bad window or time zone in an app's table is a config problem naming the exact key."""
        with pytest.raises(ConfigError) as caught:
            config_with(tmp_path, '"Fri 16:00 - Mon 08:00", "Sat"', "Mars/Olympus")
        problems = "\n".join(caught.value.problems)
        assert "apps.cafe.freeze[1]: expected a weekly window" in problems
        assert "apps.cafe.timezone: unknown time zone 'Mars/Olympus'" in problems

    def test_config_reads_windows_in_the_apps_zone(self, tmp_path: Path) -> None:
        """An app's windows and zone reach its config; Friday 16:00 Berlin is 15:00 UTC in winter."""
        app = config_with(tmp_path, '"Fri 16:00 - Mon 08:00"', "Europe/Berlin").apps["cafe"]
        assert app.frozen_at(datetime(2026, 12, 11, 14, 59, tzinfo=UTC)) is None
        found = app.frozen_at(datetime(2026, 12, 11, 15, 0, tzinfo=UTC))
        assert found is not None and found.until == datetime(2026, 12, 14, 8, 0, tzinfo=BERLIN)

    def test_timezone_defaults_to_utc(self, tmp_path: Path) -> None:
        """Without `timezone`, windows are read in UTC."""
        app = config_with(tmp_path, '"2026-12-24 - 2026-12-24"', None).apps["cafe"]
        assert app.timezone == "UTC"
        found = app.frozen_at(datetime(2026, 12, 24, 23, 59, tzinfo=UTC))
        assert found is not None and found.until == datetime(2026, 12, 25, tzinfo=UTC)


class TestEvaluate:
    def test_chained_windows_freeze_until_the_last_ends(self) -> None:
        """A weekend window that runs into a holiday range ends where the holiday ends."""
        windows = (parse_window("Fri 16:00 - Mon 08:00"), parse_window("2026-12-24 - 2026-12-27"))
        found = frozen_at(windows, BERLIN, datetime(2026, 12, 24, 12, 0, tzinfo=UTC))
        # The range ends Monday the 28th 00:00, inside the weekend window, which ends 08:00.
        assert found is not None and found.until == datetime(2026, 12, 28, 8, 0, tzinfo=BERLIN)

    def test_wall_clock_window_across_spring_forward(self) -> None:
        """Berlin skips 02:00-03:00 on 2026-03-29 (a Sunday): `Sun 01:00 - Sun 04:00` lasts two real hours."""
        windows = (parse_window("Sun 01:00 - Sun 04:00"),)
        start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
        found = frozen_at(windows, BERLIN, start)
        assert found is not None and found.until.astimezone(UTC) - start == timedelta(hours=2)
        assert frozen_at(windows, BERLIN, start + timedelta(hours=2)) is None

    def test_wall_clock_window_across_fall_back(self) -> None:
        """Berlin passes 02:00-03:00 twice on 2026-10-25: `Sun 01:00 - Sun 04:00` lasts four real hours."""
        windows = (parse_window("Sun 01:00 - Sun 04:00"),)
        start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
        found = frozen_at(windows, BERLIN, start)
        assert found is not None and found.until.astimezone(UTC) - start == timedelta(hours=4)
        second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the second 02:30
        again = frozen_at(windows, BERLIN, second_pass)
        assert again is not None and again.until > second_pass

    @settings(max_examples=300, deadline=None)
    @given(windows=WINDOWS, tz_name=ZONES, at=MOMENTS)
    def test_frozen_exactly_when_a_window_holds_the_wall_clock(
        self, windows: tuple[FreezeWindow, ...], tz_name: str, at: datetime
    ) -> None:
        """Frozen at T if and only if some window holds T's wall clock in the app's zone."""
        assert (frozen_at(windows, zone(tz_name), at) is not None) == wall_frozen(windows, tz_name, at)

    @settings(max_examples=300, deadline=None)
    @given(windows=WINDOWS, tz_name=ZONES, at=MOMENTS)
    def test_until_is_ahead_and_no_longer_frozen(
        self, windows: tuple[FreezeWindow, ...], tz_name: str, at: datetime
    ) -> None:
        """A freeze ends after T, and the moment it ends, or the first whole minute after, is not frozen
        (a chain of windows is followed to its end), while the minute before it still is."""
        weekly = [w for w in windows if isinstance(w, WeeklyWindow)]
        covered = {m for m in range(7 * 1440) for w in weekly if w.contains(MONDAY + timedelta(minutes=m))}
        assume(len(covered) < 7 * 1440)  # windows that cover the whole week freeze for good: no end to find
        found = frozen_at(windows, zone(tz_name), at)
        if found is None:
            return
        until = found.until.astimezone(UTC)
        assert until > at
        assert not wall_frozen(windows, tz_name, until)
        # A wall time the clocks skip lands after the change: the minute before is frozen then too.
        before = until - timedelta(minutes=1)
        if before > at:
            assert wall_frozen(windows, tz_name, before)
