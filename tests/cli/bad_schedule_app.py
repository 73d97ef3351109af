"""A schedule whose cron expression names hour 25: loading this file fails in one line."""

from deerflow import Schedule, Workflow

bad = Workflow(name="bad")
bad.add_trigger(Schedule(cron="0 25 * * *"))
