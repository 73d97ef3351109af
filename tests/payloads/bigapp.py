"""A workflow file whose first task returns 5 MB, as a new user writes one."""

#: ``render`` returns 5 MiB of text; ``measure`` returns how much of it it read
BIG = """
from deerflow import Workflow

wf = Workflow(name="big")

@wf.task(id="render")
def render(context):
    return "x" * (5 * 1024 * 1024)

@wf.task(id="measure", depends_on=["render"])
def measure(context):
    return len(context.tasks["render"].output)
"""
