"""Helpers for the pipeline tests: sinks that record what reached them, waiting for a state."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


class Collector:
    """A thread-safe sink recording every value, and every dead letter, it is given."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> None:
        with self._lock:
            self.items.append(value)

    def __len__(self) -> int:
        return len(self.items)


@pytest.fixture
def collected() -> Collector:
    """Where a test's pipeline sends its outputs."""
    return Collector()


@pytest.fixture
def letters() -> Collector:
    """Where a test's pipeline sends its dead letters."""
    return Collector()


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within: float = 20.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
