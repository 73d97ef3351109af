"""Flow-control options (what users write) and their checked form (what records carry).

:class:`Concurrency` and :class:`RateLimit` are what ``Workflow(..., concurrency=...,
rate_limit=...)`` takes; :func:`flow_spec` checks them once, when the workflow is defined, into
a :class:`FlowSpec`. Its :meth:`FlowSpec.limits` travel in each run's ``RunQueued``, so the gate
that decides needs no definition: a process that never loaded the workflow gates it alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import deerflow._codec as _codec
from deerflow._durations import parse_duration
from deerflow.errors import DefinitionError

#: the roots a key path may start from
KEY_ROOTS = ("params", "input")
#: a key value longer than this (as JSON) is refused: keys are kept per queued and running run
MAX_KEY_CHARS = 512


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` running runs per value of ``key`` (across all processes).

    Args:
        limit: running runs per key value (1 or more).
        key: a dotted path into the run's ``params`` or ``input`` (``"params.customer_id"``);
            ``None``: one limit for all the workflow's runs.
    """

    limit: int
    key: str | None = None


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` runs start per ``period`` per value of ``key``.

    Args:
        limit: starts per period (1 or more).
        period: ``"1m"``, ``"1h"``, seconds, or a ``timedelta``.
        key: a dotted path into ``params`` or ``input``; ``None``: one limit for all runs.
        on_excess: ``"delay"``: a run over the limit starts when the window allows (a durable
            timer); ``"drop"``: it ends at once as ``dropped``, the reason in its history.
    """

    limit: int
    period: str | float | timedelta
    key: str | None = None
    on_excess: Literal["delay", "drop"] = "delay"


@dataclass(frozen=True)
class Debounce:
    """One run per burst of runs of one ``key`` value, with the latest's params.

    A run waits ``period``; a newer run of the key within it supersedes it (the earlier ends
    ``superseded``, visible in its history) and waits ``period`` again, at most ``timeout``
    after the burst's first run. With ``concurrency=`` (or ``rate_limit=``) on the same key,
    the burst's run then queues for its slot like any run.

    Args:
        period: how long a run waits for a newer one (``"5m"``, seconds, ``timedelta``).
        key: a dotted path into ``params`` or ``input``; ``None``: all the workflow's runs.
        timeout: the longest a burst is held back; ``None``: no cap.
    """

    period: str | float | timedelta
    key: str | None = None
    timeout: str | float | timedelta | None = None


@dataclass(frozen=True)
class Batch:
    """One run for up to ``max_size`` runs of one ``key`` value requested together.

    The first run of a batch waits until ``max_size`` runs joined it or ``timeout`` passed
    since it was requested; the others end ``batched`` (their history names the run that took
    them). With ``concurrency=`` (or a delaying ``rate_limit=``) on the same key, a closed
    batch's run then queues for its slot like any run. The batch's run reads every run's
    trigger event (or params and input, for a run started by hand) in
    ``context.trigger_events``, oldest first.

    Args:
        max_size: runs per batch (1 or more).
        timeout: the longest the first run of a batch waits (``"10s"``, seconds, ``timedelta``).
        key: a dotted path into ``params`` or ``input``; ``None``: all the workflow's runs.
    """

    max_size: int
    timeout: str | float | timedelta
    key: str | None = None


@dataclass(frozen=True)
class FlowSpec:
    """A workflow's checked flow control: what its runs' ``RunQueued`` carry."""

    key: tuple[str, ...] | None
    concurrency: int | None = None
    rate: int | None = None
    period: float | None = None
    drop: bool = False
    debounce: float | None = None
    debounce_timeout: float | None = None
    batch_size: int | None = None
    batch_timeout: float | None = None
    #: a rate limit of a key of its own (a concurrency limit has ``key``): a run passes the
    #: concurrency gate, then the rate limit's (the last gate before it starts)
    rate_key: tuple[str, ...] | None = None
    split: bool = False

    def limits(self, stage: int = 0) -> dict[str, Any]:
        """The limits of gate ``stage`` as a record carries them (JSON): with a rate limit of
        a key of its own, the concurrency limit first (0), the rate limit then (1)."""
        found: dict[str, Any] = {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "period": self.period,
            "drop": self.drop,
        }
        if self.split:
            if stage == 0:
                found.update(rate=None, period=None, drop=False)
            else:
                found["concurrency"] = None
        if self.debounce is not None:
            found.update(debounce=self.debounce, debounce_timeout=self.debounce_timeout)
        if self.batch_size is not None:
            found.update(batch=self.batch_size, batch_timeout=self.batch_timeout)
        return found


def flow_spec(
    workflow: str,
    concurrency: object = None,
    rate_limit: object = None,
    debounce: object = None,
    batch: object = None,
) -> FlowSpec | None:
    """Check the flow-control options of ``workflow``; ``None`` when none is set.

    Raises:
        DefinitionError: a bad option, naming the workflow.
    """
    where = f"workflow {workflow!r}"
    if concurrency is None and rate_limit is None and debounce is None and batch is None:
        return None
    keys: dict[str, str | None] = {}
    fields: dict[str, Any] = {}
    if concurrency is not None:
        _check_type(concurrency, Concurrency, f"{where}: concurrency", "limit=..., key=...")
        assert isinstance(concurrency, Concurrency)
        fields["concurrency"] = _positive(concurrency.limit, f"{where}: concurrency limit")
        keys["concurrency"] = concurrency.key
    if rate_limit is not None:
        _check_type(rate_limit, RateLimit, f"{where}: rate_limit", "limit=..., period=...")
        assert isinstance(rate_limit, RateLimit)
        fields.update(_rate_fields(rate_limit, where))
        keys["rate_limit"] = rate_limit.key
    if debounce is not None:
        _check_type(debounce, Debounce, f"{where}: debounce", "period=..., key=...")
        assert isinstance(debounce, Debounce)
        fields["debounce"] = _period(debounce.period, f"{where}: debounce period")
        if debounce.timeout is not None:
            timeout = _period(debounce.timeout, f"{where}: debounce timeout")
            fields["debounce_timeout"] = timeout
        keys["debounce"] = debounce.key
    if batch is not None:
        _check_type(batch, Batch, f"{where}: batch", "max_size=..., timeout=...")
        assert isinstance(batch, Batch)
        _batch_combines(keys, fields, where)
        fields["batch_size"] = _positive(batch.max_size, f"{where}: batch max_size")
        fields["batch_timeout"] = _period(batch.timeout, f"{where}: batch timeout")
        keys["batch"] = batch.key
    if len(set(keys.values())) > 1:
        if set(keys) == {"concurrency", "rate_limit"}:  # one gate after the other
            fields.update(split=True, rate_key=key_path(keys["rate_limit"], where))
            return FlowSpec(key=key_path(keys["concurrency"], where), **fields)
        (one, first), (other, second) = list(keys.items())[:2]
        raise DefinitionError(
            f"{where}: {one} and {other} must share one key, got {first!r} and {second!r}"
        )
    return FlowSpec(key=key_path(next(iter(keys.values())), where), **fields)


def _batch_combines(keys: dict[str, str | None], fields: dict[str, Any], where: str) -> None:
    """A batch is refused with debounce, and with a rate limit that drops (whole batches)."""
    if "debounce" in keys:
        raise DefinitionError(f"{where}: batch cannot be combined with debounce")
    if fields.get("drop"):
        raise DefinitionError(
            f"{where}: batch cannot be combined with rate_limit(on_excess='drop'), which "
            "would drop whole batches (use on_excess='delay')"
        )


def _rate_fields(rate_limit: RateLimit, where: str) -> dict[str, Any]:
    if rate_limit.on_excess not in ("delay", "drop"):
        raise DefinitionError(
            f"{where}: rate_limit on_excess must be 'delay' or 'drop', not {rate_limit.on_excess!r}"
        )
    return {
        "rate": _positive(rate_limit.limit, f"{where}: rate_limit limit"),
        "period": _period(rate_limit.period, f"{where}: rate_limit period"),
        "drop": rate_limit.on_excess == "drop",
    }


def _check_type(value: object, cls: type, what: str, form: str) -> None:
    if not isinstance(value, cls):
        raise DefinitionError(f"{what} takes {cls.__name__}({form}), not {type(value).__name__}")


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"{what} must be a whole number of 1 or more, got {value!r}")
    return value


def _period(value: object, what: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    try:
        seconds = parse_duration(value, what)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DefinitionError(str(exc)) from None
    if seconds <= 0:
        raise DefinitionError(f"{what} must be longer than 0, got {value!r}")
    return seconds


def key_path(key: object, where: str) -> tuple[str, ...] | None:
    """A key expression as its path (``("params", "customer_id")``); ``None``: no key."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise DefinitionError(f"{where}: a flow key is a dotted path such as 'params.id'")
    path = tuple(key.split("."))
    if path[0] not in KEY_ROOTS or any(not part for part in path):
        raise DefinitionError(
            f"{where}: flow key {key!r} must be a dotted path into params or input "
            "(e.g. 'params.customer_id')"
        )
    return path


_MISSING = object()


def key_value(path: tuple[str, ...] | None, params: Any, input: Any) -> tuple[str, str | None]:
    """The key value a run's ``params``/``input`` give ``path``, as text; or an error."""
    if path is None:
        return "", None
    value: Any = {"params": params, "input": input}
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return "", f"the run has no {'.'.join(path)!r} (the flow key)"
    text = value if isinstance(value, str) else _codec.dumps(value).decode()
    if len(text) > MAX_KEY_CHARS:
        return "", f"flow key {'.'.join(path)!r} is longer than {MAX_KEY_CHARS} characters"
    return text, None
