"""Event triggers and the trigger events they deliver to tasks.

A trigger *spec* says which outside events start runs of a workflow::

    workflow.add_trigger(S3Event(bucket="data-lake", prefix="incoming/",
                                 events=["s3:ObjectCreated:*"], filter={"suffix": ".parquet"}))
    workflow.add_trigger(KafkaEvent(topic="data-events", consumer_group="deerflow",
                                    filter=lambda msg: msg["type"] == "new_data"))
    workflow.add_trigger(WebhookEvent(path="/trigger/pipeline", method="POST", auth="api_key"))
    workflow.add_trigger(Schedule(cron="0 * * * *", timezone="Europe/Paris"))

``deerflow serve`` runs a connector for each spec (:mod:`deerflow.connectors`). A connector turns
each accepted event into a *trigger event* model, stores it in the run's ``RunRequested`` event
and only then acknowledges the source. Inside a task, ``context.trigger_event`` is that model
again (:func:`parse_trigger_event`), typed by ``event.type``: ``"s3"``, ``"kafka"``,
``"webhook"`` or ``"schedule"``; a run started by hand with some other ``trigger=`` dict gets a
:class:`CustomTriggerEvent`.

The specs' base is in :mod:`._trigger`, the outside sources' specs in :mod:`._specs`, the
clock's in :mod:`._schedule`, the trigger events in :mod:`._received`.
"""

from deerflow.events._received import (
    CloudEvent,
    CustomTriggerEvent,
    KafkaMessageEvent,
    S3ObjectEvent,
    ScheduleTickEvent,
    TriggerEvent,
    WebhookRequestEvent,
    parse_trigger_event,
)

# The names imported `as` themselves are not in __all__ but stay importable from here: the
# connectors read them.
from deerflow.events._schedule import MAX_CATCHUP as MAX_CATCHUP
from deerflow.events._schedule import Schedule
from deerflow.events._specs import WEBHOOK_PROVIDERS as WEBHOOK_PROVIDERS
from deerflow.events._specs import KafkaEvent, S3Event, WebhookEvent
from deerflow.events._trigger import EventTrigger, trigger_name
from deerflow.events._trigger import spec_problem as spec_problem

__all__ = [
    "CloudEvent",
    "CustomTriggerEvent",
    "EventTrigger",
    "KafkaEvent",
    "KafkaMessageEvent",
    "S3Event",
    "S3ObjectEvent",
    "Schedule",
    "ScheduleTickEvent",
    "TriggerEvent",
    "WebhookEvent",
    "WebhookRequestEvent",
    "parse_trigger_event",
    "trigger_name",
]
