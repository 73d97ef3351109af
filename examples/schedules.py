"""Schedules: an hourly report in Paris time and a five-minute health check.

    deerflow serve examples/schedules.py
    deerflow schedules list --app examples/schedules.py
    deerflow schedules backfill hourly-report --app examples/schedules.py \
        --from 2026-10-25T00:00 --to 2026-10-25T04:00 --max-parallel 2

Each tick is one run, however many ``deerflow serve`` processes share the store.
"""

from __future__ import annotations

from deerflow import Schedule, Workflow

report = Workflow(name="hourly_report")
report.add_trigger(
    Schedule(name="hourly-report", cron="0 * * * *", timezone="Europe/Paris", catchup="all")
)


@report.task(id="build")
def build(context):
    """The report of the hour that ended at the tick (Paris time, DST included)."""
    tick = context.trigger_event.scheduled_time
    return {"hour_ending": tick.isoformat(), "backfill": context.trigger_event.backfill}


health = Workflow(name="health_check")
health.add_trigger(Schedule(name="health", every="5m", jitter="30s", catchup="skip"))


@health.task(id="probe")
def probe(context):
    """Stands in for a call to the service checked."""
    return {"checked_at": context.trigger_event.scheduled_time.isoformat(), "ok": True}
