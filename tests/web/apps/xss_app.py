"""A workflow whose description, outputs, errors and trigger payloads carry markup, scripts and
unicode tricks, for the dashboard's escaping test (tests/web/test_dashboard_xss.py)."""

from deerflow import NonRetryableError, Workflow
from deerflow.events import WebhookEvent

#: Each sets ``window.__xss`` (or opens a dialog) if a page ever runs it.
PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "javascript:window.__xss=4",
    "\u202e<script>window.__xss=5</script>",
    "\uff1cscript\uff1ewindow.__xss=6\uff1c/script\uff1e",
    "</pre></td></table><script>window.__xss=7</script>",
    "</title><script>alert(8)</script>",
    "<a href='javascript:window.__xss=9'>click</a>\u200b\u2028",
]
ALL = " ".join(PAYLOADS)

probe = Workflow(name="xss_probe", description=ALL)
probe.add_trigger(WebhookEvent(path="/hooks/xss"))


@probe.task(id="echo")
def echo(context):
    return {"body": context.trigger_event.body, "params": context.params, ALL: PAYLOADS}


@probe.task(id="boom", depends_on=["echo"])
def boom(context):
    raise NonRetryableError(ALL)
