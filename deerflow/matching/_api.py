"""``wait_for_event`` and ``cancel_on`` on :class:`~deerflow.Workflow` (``MatchingMixin``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from deerflow.core import TaskDef, WorkflowDef
from deerflow.errors import DefinitionError
from deerflow.events import KafkaEvent, S3Event, WebhookEvent
from deerflow.matching._kind import WAIT_FOR_EVENT
from deerflow.matching._service import MATCHING
from deerflow.matching._spec import match_pairs, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CancelOn:
    """Cancel a run when an event matching it arrives: ``Workflow(..., cancel_on=[CancelOn(...)])``.

    Args:
        event: the event type (exact: waits are indexed by type).
        match: event path -> run path (``{"data.order_id": "params.order_id"}``); the run's
            side is read from its params, input or trigger when it starts.
    """

    event: str
    match: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelSpec:
    """A checked :class:`CancelOn`: its match as sorted (event path, run path) pairs."""

    event: str
    pairs: tuple[tuple[str, str], ...]


class MatchingMixin(WorkflowDef):
    """Adds ``wait_for_event`` and ``cancel_on`` to a workflow, and the plugin that serves them."""

    @property
    def cancel_specs(self) -> tuple[CancelSpec, ...]:
        """The workflow's ``cancel_on`` conditions, checked."""
        specs: tuple[CancelSpec, ...] = self.__dict__.get("_cancel_specs", ())
        return specs

    def set_cancel_on(self, conditions: Iterable[CancelOn] | None) -> None:
        """Cancel each run when an event meets one of ``conditions`` (see :class:`CancelOn`)."""
        specs = []
        for condition in conditions or ():
            if not isinstance(condition, CancelOn):
                raise DefinitionError(
                    f"workflow {self.name!r}: cancel_on takes CancelOn(...) items, "
                    f"not {type(condition).__name__}"
                )
            where = f"workflow {self.name!r}, cancel_on {condition.event!r}"
            _check_event_type(condition.event, where)
            pairs = match_pairs(condition.match, where)
            if any(run_path.startswith("tasks.") for _, run_path in pairs):
                raise DefinitionError(f"{where}: a run is matched when it starts: no tasks.*")
            specs.append(CancelSpec(condition.event, pairs))
        self.__dict__["_cancel_specs"] = tuple(specs)
        if specs:
            self._carry_matching()

    def wait_for_event(
        self,
        id: str,
        *,
        event: str,
        depends_on: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float | str | timedelta | None = None,
        on_timeout: Literal["none", "fail"] = "none",
        lookback: float | str | timedelta | None = None,
        source: KafkaEvent | WebhookEvent | S3Event | None = None,
    ) -> Callable[[F], F]:
        """Add a node that waits for an event; its output is the event, or ``None`` on timeout.

        The node is added at once (like ``sub_workflow``): the decorator may stand above
        another task's or be called on its own. See the guide *Waiting for events*.

        Args:
            id: the node's task id.
            event: the event type to wait for (exact).
            depends_on: tasks that must complete before the wait begins.
            match: event path -> run path: the event's ``data.invoice_id`` must equal the
                run's ``params.invoice_id`` (run paths: ``params``, ``input``, ``trigger``,
                ``tasks.<id>.output``). Without it, any event of the type matches.
            where: ``where(event) -> bool`` filters the events that match further.
            timeout: how long to wait (``"7d"``, ``"1h"``, seconds); ``None``: for ever.
            on_timeout: ``"none"``: the node completes with ``None``; ``"fail"``: it fails.
            lookback: also match events of the type already seen this long before the wait
                began (within the index's buffer of recent events).
            source: ``KafkaEvent(topic=...)``: every message of that topic of the deployment's
                own log is also an ``event`` (its JSON body is the event's ``data``).
                ``WebhookEvent(path=...)``: every accepted request to that path of ``deerflow
                serve``'s gateway is one (its body is the ``data``); ``S3Event(bucket=...)``:
                every matching object event is one (``data``: bucket, key, size, ...). Their
                ids derive from the delivery id or the object's version or sequencer, so a
                redelivery resumes nothing more.

        Raises:
            DefinitionError: a bad option, naming the workflow and the node.
        """
        where_ = f"workflow {self.name!r}, task {id!r}"
        _check_event_type(event, where_)
        if isinstance(depends_on, str):
            raise DefinitionError(f"{where_}: depends_on must be a list of task ids")
        if where is not None and not callable(where):
            raise DefinitionError(f"{where_}: where must be a function of the event")
        pairs = match_pairs(match, where_)
        for _, run_path in pairs:
            upstream = run_path.split(".")[1] if run_path.startswith("tasks.") else None
            if upstream is not None and upstream not in depends_on:
                raise DefinitionError(
                    f"{where_}: match reads {run_path!r}: {upstream!r} must be in depends_on"
                )
        options = {  # validated by the kind (a bad on_timeout names the node)
            "event": event,
            "match": pairs,
            "where": where,
            "timeout": parse_duration(timeout, f"{where_}: timeout"),
            "on_timeout": on_timeout,
            "lookback": parse_duration(lookback, f"{where_}: lookback"),
            "topic": _source_topic(source, where_),
            "via": source if isinstance(source, WebhookEvent | S3Event) else None,
        }
        self.add_task(
            TaskDef(
                id=id,
                fn=None,
                depends_on=tuple(depends_on),
                kind=WAIT_FOR_EVENT,
                options=options,
            )
        )
        self._carry_matching()

        def passthrough(fn: F) -> F:
            return fn

        return passthrough

    def _carry_matching(self) -> None:
        if MATCHING not in self.plugins:
            self.plugins.append(MATCHING)


def _source_topic(source: object, where: str) -> str | None:
    """The topic of a ``source=`` Kafka trigger spec (a topic of the deployment's log);
    ``None`` for a webhook or S3 spec (served by ``deerflow serve``) or none."""
    if source is None or isinstance(source, WebhookEvent | S3Event):
        return None
    if not isinstance(source, KafkaEvent):
        raise DefinitionError(
            f"{where}: source= takes KafkaEvent(topic=...), WebhookEvent(path=...) or "
            f"S3Event(bucket=...), not {type(source).__name__}"
        )
    if source.bootstrap_servers is not None:
        raise DefinitionError(f"{where}: source= reads a topic of the deployment's own log")
    return source.topic


def _check_event_type(event: object, where: str) -> None:
    if not isinstance(event, str) or not event or "*" in event:
        raise DefinitionError(f"{where}: event must be one event type (no '*'), got {event!r}")
