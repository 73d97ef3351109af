"""``@stage``: marks a method of a :class:`~deerflow.Pipeline` as one stage, with its options.

The decorator only records options on the function (which stays an ordinary method, so a
pipeline's stages can be unit-tested by calling them); the pipeline class collects the marked
methods in definition order when it is created.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from deerflow.core import RetryPolicy
from deerflow.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])

STAGE_ATTR = "__deerflow_stage__"
RESERVED_NAMES = frozenset({"sink", "source"})


@dataclass(frozen=True, slots=True)
class StageOptions:
    """How one stage runs.

    Attributes:
        parallelism: workers running the stage at once (threads for a sync stage).
        batch_size: when set, the stage receives lists of up to this many items.
        batch_timeout: seconds a partial batch waits for more items before it is flushed.
        ordered: route items by key to one worker each, so one key's items pass in order.
        retries: further attempts after a failed first one, before the item is dead-lettered.
        retry_delay: seconds before the first retry.
        backoff: factor applied to the delay for each further retry.
        max_retry_delay: upper bound of one delay.
    """

    parallelism: int = 1
    batch_size: int | None = None
    batch_timeout: float = 1.0
    ordered: bool = False
    retries: int = 0
    retry_delay: float = 0.1
    backoff: float = 2.0
    max_retry_delay: float = 30.0

    @property
    def retry(self) -> RetryPolicy:
        """The retry options as the policy tasks use (one backoff rule for both)."""
        return RetryPolicy(self.retries, self.retry_delay, self.backoff, self.max_retry_delay)

    @property
    def max_attempts(self) -> int:
        """First attempt plus retries."""
        return self.retry.max_attempts

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 is the first retry)."""
        return self.retry.delay_before(attempt)

    def problems(self) -> list[str]:
        """What is wrong with these options, as phrases; empty when they are valid."""
        found = []
        if not isinstance(self.parallelism, int) or self.parallelism < 1:
            found.append(f"parallelism must be an integer >= 1, not {self.parallelism!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            found.append(f"batch_size must be an integer >= 1, not {self.batch_size!r}")
        if not self.batch_timeout >= 0:
            found.append(f"batch_timeout must be >= 0, not {self.batch_timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            found.append(f"retries must be an integer >= 0, not {self.retries!r}")
        if self.retry_delay < 0 or self.backoff < 1 or self.max_retry_delay < 0:
            found.append("retry_delay and max_retry_delay must be >= 0 and backoff >= 1")
        return found


@dataclass(frozen=True, slots=True)
class StageDef:
    """A stage as its pipeline class declares it: the method's name, function and options."""

    name: str
    fn: Callable[..., Any]
    options: StageOptions

    @property
    def is_async(self) -> bool:
        """Whether the stage is a coroutine function (run on the loop, not in a thread)."""
        return inspect.iscoroutinefunction(self.fn)


@overload
def stage(fn: F, /) -> F: ...


@overload
def stage(
    *,
    parallelism: int = 1,
    batch_size: int | None = None,
    batch_timeout: float = 1.0,
    ordered: bool = False,
    retries: int = 0,
    retry_delay: float = 0.1,
    backoff: float = 2.0,
    max_retry_delay: float = 30.0,
) -> Callable[[F], F]: ...


def stage(
    fn: F | None = None,
    /,
    *,
    parallelism: int = 1,
    batch_size: int | None = None,
    batch_timeout: float = 1.0,
    ordered: bool = False,
    retries: int = 0,
    retry_delay: float = 0.1,
    backoff: float = 2.0,
    max_retry_delay: float = 30.0,
) -> F | Callable[[F], F]:
    """Mark a :class:`~deerflow.Pipeline` method as a stage; stages run in definition order.

    The method receives one item (``def transform(self, record)``) or, with ``batch_size``, a
    list of items, flushed when full or ``batch_timeout`` seconds after its first item. Sync
    methods run in threads (``parallelism`` of them), async ones on the event loop. What a
    stage returns is the next stage's item; a batch stage that returns a list as long as its
    batch passes one output per input on, anything else is one output for the whole batch.

    A failing item is retried ``retries`` times (``retry_delay * backoff ** n`` apart; an
    error with ``retriable=False`` is not retried), then goes to the dead-letter sink.
    ``ordered=True`` sends all items of one key to the same worker (see the package docs).

    Usable bare (``@stage``) or with options (``@stage(parallelism=5)``).
    """
    options = StageOptions(
        parallelism=parallelism,
        batch_size=batch_size,
        batch_timeout=batch_timeout,
        ordered=ordered,
        retries=retries,
        retry_delay=retry_delay,
        backoff=backoff,
        max_retry_delay=max_retry_delay,
    )

    def mark(func: F) -> F:
        name = getattr(func, "__name__", repr(func))
        problems = options.problems()
        if problems:
            raise DefinitionError(f"stage {name!r}: {'; '.join(problems)}")
        _check_signature(name, func)
        setattr(func, STAGE_ATTR, options)
        return func

    return mark(fn) if fn is not None else mark


def _check_signature(name: str, fn: Callable[..., Any]) -> None:
    if not callable(fn):
        raise DefinitionError(f"stage {name!r}: @stage decorates methods, not {fn!r}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    if (len(positional) < 2 and not varargs) or len(required) > 2:
        raise DefinitionError(
            f"stage {name!r}: a stage is a method taking one item: def {name}(self, item)"
        )


def collect_stages(cls: type) -> tuple[StageDef, ...]:
    """The stages of ``cls`` in definition order; base classes' stages first.

    A subclass may override a stage (it keeps its place) or hide it with a plain attribute.
    """
    found: dict[str, StageDef] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            options = getattr(value, STAGE_ATTR, None)
            if isinstance(options, StageOptions):
                found[name] = StageDef(name, value, options)
            elif name in found:
                del found[name]
    return tuple(found.values())
