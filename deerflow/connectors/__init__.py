"""Trigger sources: what turns Kafka messages, HTTP requests and S3 events into runs.

Each source follows one template (:class:`TriggerSource`): read input, request runs durably
(run ids derived from the input's identity, so redeliveries are the same run), then
acknowledge. :func:`sources_for` builds the sources for the triggers of a set of workflows;
``deerflow serve`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deerflow.connectors._auth import ApiKeys, load_config, sign
from deerflow.connectors._waitsources import wait_sources
from deerflow.connectors.base import (
    DeadLetter,
    EngineLoad,
    RunRequest,
    TriggerSource,
    run_id_for,
)
from deerflow.connectors.kafka import (
    KafkaRoute,
    KafkaTriggerSource,
    source_log_for,
    source_url_for,
)
from deerflow.connectors.s3 import S3NotificationSource
from deerflow.connectors.s3poll import S3PollingSource
from deerflow.connectors.schedule import (
    BackfillResult,
    ScheduleControl,
    ScheduleInfo,
    ScheduleSource,
    schedule_entries,
)
from deerflow.connectors.webhook import WebhookGateway
from deerflow.core import WorkflowDef as Workflow
from deerflow.errors import ConnectorError
from deerflow.events import EventTrigger, KafkaEvent, S3Event, Schedule, WebhookEvent, trigger_name
from deerflow.runtime import Engine

__all__ = [
    "ApiKeys",
    "BackfillResult",
    "DeadLetter",
    "EngineLoad",
    "KafkaRoute",
    "KafkaTriggerSource",
    "RunRequest",
    "S3NotificationSource",
    "S3PollingSource",
    "ScheduleControl",
    "ScheduleInfo",
    "ScheduleSource",
    "TriggerSource",
    "WebhookGateway",
    "find_trigger",
    "load_config",
    "run_id_for",
    "sign",
    "sources_for",
]


def _named_triggers(workflows: Iterable[Workflow]) -> list[tuple[str, Workflow, EventTrigger]]:
    named: list[tuple[str, Workflow, EventTrigger]] = []
    seen: set[str] = set()
    for wf in workflows:
        for trigger in wf.triggers:
            if not isinstance(trigger, EventTrigger):
                raise ConnectorError(
                    f"workflow {wf.name!r}: {trigger!r} is not an EventTrigger", retriable=False
                )
            name = trigger_name(wf.name, trigger)
            if name in seen:
                raise ConnectorError(
                    f"two triggers are named {name!r}: give one a name=", retriable=False
                )
            seen.add(name)
            named.append((name, wf, trigger))
    return named


def find_trigger(workflows: Iterable[Workflow], name: str) -> tuple[Workflow, EventTrigger]:
    """The workflow and trigger called ``name``; :class:`ConnectorError` naming the others."""
    named = _named_triggers(workflows)
    for found, wf, trigger in named:
        if found == name:
            return wf, trigger
    known = ", ".join(n for n, _, _ in named) or "none"
    raise ConnectorError(f"no trigger named {name!r} (known: {known})", retriable=False)


def _kafka_sources(
    engine: Engine,
    routes: list[KafkaRoute],
    **options: Any,
) -> list[KafkaTriggerSource]:
    groups: dict[tuple[str | None, str], dict[str, KafkaRoute]] = {}
    for route in routes:
        key = (source_url_for(engine, route.trigger), route.trigger.consumer_group)
        topics = groups.setdefault(key, {})
        if route.trigger.topic in topics:
            raise ConnectorError(
                f"triggers {topics[route.trigger.topic].name!r} and {route.name!r} read topic "
                f"{route.trigger.topic!r} in one consumer group {key[1]!r}: each would see only "
                "part of it; give them different consumer_group values",
                retriable=False,
            )
        topics[route.trigger.topic] = route
    sources = []
    for (url, group), topic_routes in groups.items():
        log, owned = source_log_for(engine, url)
        sources.append(
            KafkaTriggerSource(engine, group, topic_routes, log=log, owns_log=owned, **options)
        )
    return sources


def _wait_sources(
    engine: Engine,
    workflows: Iterable[Workflow],
    gateway: WebhookGateway | None,
    max_running: int | None,
) -> list[TriggerSource[Any]]:
    """The sources of ``wait_for_event(source=WebhookEvent | S3Event)`` (webhook: routes)."""
    sources: list[TriggerSource[Any]] = []
    for waited in wait_sources(workflows):
        events = tuple(waited.events)
        if isinstance(waited.spec, WebhookEvent):
            if gateway is None:
                raise ConnectorError(
                    f"wait_for_event source {waited.name!r} needs a webhook gateway",
                    retriable=False,
                )
            gateway.add_webhook(waited.workflow, waited.spec, waited.name, events=events)
        elif isinstance(waited.spec, S3Event):
            cls = S3PollingSource if waited.spec.mode == "poll" else S3NotificationSource
            sources.append(
                cls(
                    engine,
                    waited.workflow,
                    waited.spec,
                    waited.name,
                    max_running=max_running,
                    events=events,
                )
            )
    return sources


def sources_for(
    engine: Engine,
    workflows: Iterable[Workflow],
    *,
    gateway: WebhookGateway | None = None,
    max_running: int | None = None,
) -> list[TriggerSource[Any]]:
    """Sources for every trigger of ``workflows`` (not started).

    Webhook triggers become routes of ``gateway`` (required if there are any); so do the
    webhook ``source=`` of ``wait_for_event`` nodes, and their S3 ``source=`` S3 sources, whose
    input is appended as events for the waiting runs instead of starting runs; Kafka triggers
    sharing a cluster and consumer group share one consumer; every schedule is fired by one
    :class:`ScheduleSource`.
    """
    sources: list[TriggerSource[Any]] = []
    kafka: list[KafkaRoute] = []
    for name, wf, trigger in _named_triggers(workflows):
        if isinstance(trigger, KafkaEvent):
            kafka.append(KafkaRoute(wf.name, trigger, name))
        elif isinstance(trigger, S3Event):
            cls = S3PollingSource if trigger.mode == "poll" else S3NotificationSource
            sources.append(cls(engine, wf.name, trigger, name, max_running=max_running))
        elif isinstance(trigger, WebhookEvent):
            if gateway is None:
                raise ConnectorError(f"trigger {name!r} needs a webhook gateway", retriable=False)
            gateway.add_webhook(wf.name, trigger, name)
        elif isinstance(trigger, Schedule):
            trigger.attached(wf.name)  # a spec appended to wf.triggers by hand is checked too
        else:
            raise ConnectorError(
                f"trigger {name!r}: no connector for {type(trigger).__name__}", retriable=False
            )
    sources.extend(_wait_sources(engine, workflows, gateway, max_running))
    entries = schedule_entries(workflows)
    if entries:
        sources.append(ScheduleSource(engine, entries, max_running=max_running))
    return [*_kafka_sources(engine, kafka, max_running=max_running), *sources]
