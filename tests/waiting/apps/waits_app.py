"""A run that sleeps, then waits for the signal "go" (whose data is its output)."""

from deerflow import Workflow

waits = Workflow(name="waits")
waits.sleep(id="nap", duration=6)
waits.wait_for_signal(id="go", name="go", timeout="90s", on_timeout="fail", depends_on=["nap"])


@waits.task(id="done", depends_on=["go"])
def done(context):
    return context.tasks["go"].output


# Nobody signals it: its deadline fails it.
unanswered = Workflow(name="unanswered")
unanswered.wait_for_signal(id="go", name="go", timeout="6s", on_timeout="fail")
