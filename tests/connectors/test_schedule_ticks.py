"""Schedule ticks: cron in a time zone across DST, intervals, jitter, catchup, definition errors.

Time is passed in: nothing here sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from deerflow import DefinitionError, Workflow
from deerflow.connectors._ticks import backfill_ticks, due, jitter_of, ticks_back, ticks_from
from deerflow.events import Schedule, ScheduleTickEvent, parse_trigger_event

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: ZoneInfo = PARIS
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def local(tick: float, tz: ZoneInfo = PARIS) -> str:
    return datetime.fromtimestamp(tick, tz).strftime("%m-%d %H:%M%z")


def attached(**options: object) -> Schedule:
    spec = Schedule(**options)
    Workflow(name="wf").add_trigger(spec)
    return spec


def test_a_daily_cron_keeps_its_local_time_across_both_dst_changes() -> None:
    spec = attached(cron="30 9 * * *", timezone="Europe/Paris")
    spring = list(islice(ticks_from(spec, ts(2026, 3, 28, 12)), 2))
    autumn = list(islice(ticks_from(spec, ts(2026, 10, 24, 12)), 2))
    assert [local(t) for t in spring] == ["03-29 09:30+0200", "03-30 09:30+0200"]
    assert [local(t) for t in autumn] == ["10-25 09:30+0100", "10-26 09:30+0100"]
    # 23 and 25 hours apart in UTC, as a person in Paris expects.
    assert spring[0] - ts(2026, 3, 28, 9, 30) == 23 * 3600
    assert autumn[0] - ts(2026, 10, 24, 9, 30) == 25 * 3600


def test_a_time_skipped_by_dst_runs_once_when_the_clock_jumps_and_a_repeated_one_once() -> None:
    spec = attached(cron="30 2 * * *", timezone="Europe/Paris")
    spring = next(ticks_from(spec, ts(2026, 3, 28, 12)))
    assert local(spring) == "03-29 03:00+0200"  # 02:30 does not exist that night
    autumn = list(islice(ticks_from(spec, ts(2026, 10, 24, 12)), 2))
    assert [local(t) for t in autumn] == ["10-25 02:30+0200", "10-26 02:30+0100"]


def test_an_hourly_cron_runs_every_hour_through_the_repeated_hour() -> None:
    spec = attached(cron="0 * * * *", timezone="Europe/Paris")
    ticks = list(islice(ticks_from(spec, ts(2026, 10, 25, 0, 30)), 4))
    assert [local(t) for t in ticks] == [
        "10-25 01:00+0200",
        "10-25 02:00+0200",
        "10-25 02:00+0100",
        "10-25 03:00+0100",
    ]
    assert all(b - a == 3600 for a, b in pairwise(ticks))


def test_the_zone_is_the_schedules_not_the_machines() -> None:
    paris = next(ticks_from(attached(cron="0 9 * * *", timezone="Europe/Paris"), ts(2026, 1, 5)))
    ny = next(ticks_from(attached(cron="0 9 * * *", timezone="America/New_York"), ts(2026, 1, 5)))
    assert ny - paris == 6 * 3600
    assert local(ny, NEW_YORK) == "01-05 09:00-0500"


def test_walking_back_finds_the_same_ticks_as_walking_forward() -> None:
    spec = attached(cron="*/20 * * * *", timezone="Europe/Paris")
    forward = list(islice(ticks_from(spec, ts(2026, 10, 25, 1)), 9))
    back = list(islice(ticks_back(spec, forward[-1]), 9))
    assert back[::-1] == forward


def test_an_interval_falls_on_multiples_of_itself_from_start() -> None:
    spec = attached(every="5m")
    assert next(ticks_from(spec, 1_000_000_001.0)) == 1_000_000_200.0
    started = attached(every=90, start=datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC))
    first = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC).timestamp()
    assert list(islice(ticks_from(started, 0), 2)) == [first, first + 90]


def test_no_tick_outside_start_and_end() -> None:
    spec = attached(
        cron="0 12 * * *",
        timezone="Europe/Paris",
        start=datetime(2026, 5, 2),
        end=datetime(2026, 5, 4, 12),
    )
    assert [local(t) for t in ticks_from(spec, 0)] == [
        "05-02 12:00+0200",
        "05-03 12:00+0200",
        "05-04 12:00+0200",
    ]
    assert list(ticks_back(spec, ts(2026, 6, 1))) == list(ticks_from(spec, 0))[::-1]


def test_jitter_is_below_its_bound_and_the_same_for_a_tick_everywhere() -> None:
    spec = attached(every="1m", jitter="30s")
    delays = [jitter_of(spec, "s", 60.0 * k) for k in range(200)]
    assert all(0 <= d < 30 for d in delays)
    assert len(set(delays)) > 150
    assert jitter_of(spec, "s", 60.0) == jitter_of(spec, "s", 60.0)
    assert jitter_of(attached(every="1m"), "s", 60.0) == 0.0


def test_a_jittered_tick_is_not_due_before_its_delay() -> None:
    spec = attached(every="1m", jitter="50s")
    delay = jitter_of(spec, "s", 120.0)
    assert due(spec, "s", 60.0, 120.0 + delay - 0.001).fire == ()
    assert due(spec, "s", 60.0, 120.0 + delay).fire == (120.0,)


@pytest.mark.parametrize(
    ("catchup", "fired"),
    [
        ("skip", []),
        ("latest", [600.0]),
        ("all", [180.0, 240.0, 300.0, 360.0, 420.0, 480.0, 540.0, 600.0]),
    ],
)
def test_missed_ticks_after_downtime_follow_catchup(catchup: str, fired: list[float]) -> None:
    spec = attached(every="1m", catchup=catchup, grace=5)
    found = due(spec, "s", 120.0, 600.0 + 30)  # down from just after 120 to 630
    assert list(found.fire) == fired
    assert found.cursor == 600.0
    assert found.missed == 8 - len(fired)


def test_catchup_all_is_bounded_to_the_newest_ticks() -> None:
    spec = attached(every="1s", catchup="all", max_catchup=10, grace=0)
    found = due(spec, "s", 0.0, 100_000.5)
    assert list(found.fire) == [float(t) for t in range(99_991, 100_001)]
    assert found.cursor == 100_000.0


def test_a_tick_late_within_grace_is_on_time_whatever_the_catchup() -> None:
    spec = attached(every="1m", catchup="skip", grace=10)
    assert due(spec, "s", 60.0, 129.0).fire == (120.0,)
    assert due(spec, "s", 60.0, 131.0).fire == ()


def test_backfill_ticks_include_both_ends_and_are_bounded() -> None:
    spec = attached(cron="0 * * * *", timezone="Europe/Paris")
    ticks = backfill_ticks(spec, ts(2026, 10, 25, 1), ts(2026, 10, 25, 4))
    assert [local(t) for t in ticks] == [
        "10-25 01:00+0200",
        "10-25 02:00+0200",
        "10-25 02:00+0100",
        "10-25 03:00+0100",
        "10-25 04:00+0100",
    ]
    with pytest.raises(ValueError, match="more than 10000 ticks"):
        backfill_ticks(attached(every="1s"), 0, 20_000)
    with pytest.raises(ValueError, match="must not be after"):
        backfill_ticks(spec, 10, 0)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"cron": "61 * * * *"}, r"Schedule\(cron='61 \* \* \* \*'\): invalid cron expression"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"every": "5 minutes"}, "every '5 minutes' is not a duration"),
        ({"every": 0}, "must be longer than zero"),
        ({"every": "1m", "jitter": "1m"}, "jitter='1m' must be shorter than the interval"),
        ({}, "give exactly one of cron= and every="),
        ({"cron": "0 * * * *", "every": "1h"}, "give exactly one of cron= and every="),
        (
            {"every": "1h", "start": datetime(2026, 2, 1), "end": datetime(2026, 1, 1)},
            "start= must be before end=",
        ),
    ],
)
def test_a_schedule_that_cannot_work_fails_when_added_naming_the_workflow(
    options: dict[str, object], problem: str
) -> None:
    wf = Workflow(name="nightly_report")
    with pytest.raises(DefinitionError, match="workflow 'nightly_report': Schedule") as info:
        wf.add_trigger(Schedule(**options))
    assert info.match(problem)
    assert "\n" not in str(info.value)
    assert wf.triggers == []


def test_an_unknown_option_or_catchup_is_one_line_naming_the_options() -> None:
    with pytest.raises(DefinitionError, match="unknown option 'crontab'"):
        Schedule(crontab="0 * * * *")  # type: ignore[call-arg]
    with pytest.raises(DefinitionError, match="catchup"):
        Schedule(every="1m", catchup="some")


def test_a_tick_event_reads_back_from_a_runs_history_with_its_zone() -> None:
    when = datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)
    stored = ScheduleTickEvent(trigger="s", schedule="s", scheduled_time=when).model_dump(
        mode="json"
    )
    event = parse_trigger_event(stored)
    assert isinstance(event, ScheduleTickEvent)
    assert event.scheduled_time == when
    assert event.scheduled_time.utcoffset() == when.utcoffset()
