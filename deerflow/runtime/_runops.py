"""The engine's operations on runs: a state machine's transition, a cancel, a signal."""

from __future__ import annotations

import uuid
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.state import request_takers
from deerflow.errors import DeerflowError, InvalidSignal, RunEnded, TransitionNotAllowed
from deerflow.runtime._engineparts import EngineParts
from deerflow.runtime._results import RunResult

__all__ = ["SIGNAL_DATA_LIMIT", "SIGNAL_NAME_LIMIT", "RunOperations"]

#: the longest signal name or id accepted (kept in the run's state until taken)
SIGNAL_NAME_LIMIT = 200
#: the largest signal data accepted, encoded (kept in the run's state until taken)
SIGNAL_DATA_LIMIT = 64 * 1024


class RunOperations(EngineParts):
    """``send``, ``cancel`` and ``signal``."""

    async def send(
        self,
        instance_id: str,
        transition: str,
        payload: Any = None,
        *,
        request_id: str | None = None,
        wait: bool = True,
        timeout: float | None = 60.0,
    ) -> RunResult:
        """Ask state-machine instance ``instance_id`` to take ``transition``.

        Requests on one instance are applied one at a time, in order. Raises
        :class:`TransitionNotAllowed` (nothing changes) when the transition is unknown, not
        allowed in the instance's state, or refused by its guard; :class:`TaskError` when its
        handler failed for good (the instance stays in its source state). ``request_id`` makes
        a retried request idempotent. With ``wait=False`` it returns once the request is
        durable.
        """
        current = await self.get_run(instance_id)
        wf = self.registry.get(current.workflow, current.version)
        if current.state is None and (wf is None or not wf.takes_requests()):
            raise DeerflowError(f"run {instance_id} is not a state-machine instance")
        refusal = "the instance has ended" if current.done else None
        if refusal is None and wf is not None and wf.takes_requests():
            refusal = wf.request_refusal(transition, current.state)
        # Without the definition here (a CLI), the instance's owner checks and may refuse.
        if refusal is not None:
            raise TransitionNotAllowed(f"{instance_id}: {refusal}")
        rid = request_id or uuid.uuid4().hex[:16]
        # The feature whose runs take requests defines their events and answers (its fold
        # extension, registered when deerflow is imported).
        taker, event = next(
            (
                (ext, ev)
                for ext in request_takers()
                if (ev := ext.request(instance_id, rid, transition, payload)) is not None
            ),
            (None, None),
        )
        if taker is None or event is None:
            raise DeerflowError("state machines are not loaded in this process")
        await self.append_history([event])
        if not wait:
            return current
        state = await self.index.wait(
            instance_id, lambda s: s.terminal or taker.answered(s, rid), timeout
        )
        if state is None:
            raise TimeoutError(
                f"transition {transition!r} of {instance_id} not applied in {timeout}s"
            )
        taker.answer(state, rid, transition)
        return self._result(state)

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> None:
        """Ask for ``run_id`` to be cancelled: pending tasks are skipped, the run ends cancelled."""
        await self.get_run(run_id)
        await self.append_history(
            [
                h.RunCancelRequested(
                    id=h.event_id(run_id, "cancel-requested"), run_id=run_id, reason=reason
                )
            ]
        )

    async def signal(
        self, run_id: str, name: str, data: Any = None, *, signal_id: str | None = None
    ) -> str:
        """Send the signal ``name`` with JSON ``data`` to ``run_id``; return the signal's id.

        A node of the run waiting for ``name`` (``wait_for_signal``) takes it as its output;
        one sent before such a node is reached is kept for it. Each signal is taken once:
        sending again with the same ``signal_id`` (a retried request) delivers nothing more.
        Raises :class:`RunNotFound` for an unknown run, :class:`RunEnded` for one that has
        ended (a signal racing the run's end is dropped by the run's history) and
        :class:`InvalidSignal` for a name or id not 1 to 200 characters, or data not JSON
        or over 64 KiB encoded.
        """
        for what, text in (("name", name), ("id", signal_id)):
            if (text is not None or what == "name") and not _short_text(text):
                raise InvalidSignal(f"a signal {what} is 1 to {SIGNAL_NAME_LIMIT} characters")
        try:
            size = len(_codec.dumps(data))
        except TypeError as exc:
            raise InvalidSignal(f"signal {name!r}: data is not JSON: {exc}") from None
        if size > SIGNAL_DATA_LIMIT:
            raise InvalidSignal(
                f"signal {name!r}: data is {size} bytes encoded, over {SIGNAL_DATA_LIMIT}"
            )
        current = await self.get_run(run_id)
        if current.done:
            raise RunEnded(
                f"run {run_id} has ended ({current.status}): it takes no more signals",
                run_id=run_id,
                status=current.status,
            )
        # The waiting feature defines the signal's history event (deerflow imports it).
        received = h.event_class("SignalReceived")
        if received is None:
            raise DeerflowError("waiting nodes are not loaded in this process")
        sid = signal_id or uuid.uuid4().hex
        event = {
            "id": h.event_id(run_id, "signal", sid),
            "run_id": run_id,
            "signal_id": sid,
            "name": name,
            "data": data,
        }
        await self.append_history([received.model_validate(event)])
        return sid


def _short_text(text: object) -> bool:
    return isinstance(text, str) and 0 < len(text) <= SIGNAL_NAME_LIMIT
