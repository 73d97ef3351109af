"""The payload codec seam: what turns a record's value into the bytes the log keeps, and back.

Every record the runtime appends passes through a :class:`PayloadCodec` on its way to the log
(:meth:`~PayloadCodec.encode`) and every record it reads passes back through it
(:meth:`~PayloadCodec.decode`), so task inputs and outputs, trigger events and run parameters
are seen whole by the runtime whatever the log holds. Claim checks
(:class:`~deerflow.payloads.ClaimCheck`: large values kept in a blob store, the log holding a
reference) are one codec; encryption at rest is another of the same shape. A codec marks what it
did in a record header, so it leaves untouched records it did not write (records of other
producers, records written before it was configured).
"""

from __future__ import annotations

import abc

from deerflow.log.base import Message, Record

__all__ = ["PayloadCodec"]


class PayloadCodec(abc.ABC):
    """Encodes record values on their way to the log and decodes them on their way back."""

    @abc.abstractmethod
    async def encode(self, message: Message) -> Message:
        """``message`` as the log should keep it (the same message when nothing is to do)."""

    @abc.abstractmethod
    async def decode(self, record: Record) -> Record:
        """``record`` as its producer wrote it; leaves a record this codec did not encode alone.

        Raises:
            PayloadUnreadable: the record cannot be restored (names the record and why).
        """

    async def start(self) -> None:  # noqa: B027 - most codecs hold no connection
        """Open what the codec needs (a blob store's client)."""

    async def stop(self) -> None:  # noqa: B027
        """Release what :meth:`start` opened."""
