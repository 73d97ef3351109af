"""A workflow on an hourly schedule in Paris, for the ``deerflow schedules`` tests."""

from typing import Any

from deerflow import Schedule, Workflow

report = Workflow(name="report")
report.add_trigger(Schedule(name="hourly-report", cron="0 * * * *", timezone="Europe/Paris"))


@report.task(id="build")
def build(context: Any) -> str:
    return context.trigger_event.scheduled_time.isoformat()
