"""Matching event types: deerflow's (``OrderCreated``), CloudEvents' (``com.acme.order.paid``).

One rule for everything that subscribes by type (event handlers, subscriptions, projections;
waiting for an event later): a pattern without ``*`` is the type itself; ``*`` stands for any
run of characters, dots included, so ``com.acme.order.*`` is every type under
``com.acme.order.`` and ``*`` alone is every type. CloudEvents types are reverse-DNS names
by convention, and a consumer usually wants a whole branch of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection

__all__ = ["TypeFilter", "type_matches"]


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether ``event_type`` is one ``pattern`` names (see the module docstring)."""
    if "*" not in pattern:
        return pattern == event_type
    return _compiled(pattern).fullmatch(event_type) is not None


class TypeFilter:
    """The types a subscriber wants: exact names looked up at once, patterns tried in turn.

    Args:
        patterns: types or patterns; ``None``: every type.
    """

    def __init__(self, patterns: Collection[str] | None) -> None:
        self.everything = patterns is None or "*" in patterns
        wanted = frozenset(patterns or ())
        self._exact = frozenset(p for p in wanted if "*" not in p)
        self._patterns = tuple(p for p in wanted if "*" in p)

    def __call__(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` is wanted."""
        if self.everything or event_type in self._exact:
            return True
        return any(type_matches(pattern, event_type) for pattern in self._patterns)
