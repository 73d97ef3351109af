"""Blob stores: where a claim check keeps the values too large for the log.

:class:`LocalBlobStore` (a directory, the embedded SQLite default), :class:`MemoryBlobStore`
(its in-memory twin, for tests and ``memory://``) and :class:`~deerflow.payloads.S3BlobStore`.
Keys are chosen by the caller and are safe path segments (``[A-Za-z0-9._/-]``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
from collections import OrderedDict
from pathlib import Path

from deerflow.errors import PayloadUnreadable

__all__ = ["BlobStore", "LocalBlobStore", "MemoryBlobStore", "directory", "missing"]

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _checked(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"blob key {key!r} is not a safe path ([A-Za-z0-9._-] segments)")
    return key


def directory(prefix: str) -> str:
    """``prefix``, checked to name a directory of blob keys (it ends with ``/``)."""
    # Only whole directories: a bare "run-1" would take "run-10"'s blobs too.
    if not prefix.endswith("/"):
        raise ValueError(f"blob prefix {prefix!r} is not a directory (it must end with '/')")
    _checked(prefix.rstrip("/"))
    return prefix


class BlobStore(abc.ABC):
    """Keeps blobs by key; :attr:`url` names the store in references."""

    url: str

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing what was there); durable when it returns."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The blob under ``key``.

        Raises:
            PayloadUnreadable: there is none (``retriable=False``) or the store is unreachable.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the blob under ``key``; nothing happens if there is none."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with ``prefix`` (a directory: ends with ``/``);
        returns how many went. Idempotent: nothing happens when there is none."""

    async def start(self) -> None:  # noqa: B027 - a directory needs no connection
        """Open the store's client."""

    async def stop(self) -> None:  # noqa: B027
        """Close what :meth:`start` opened."""


def missing(store: BlobStore, key: str) -> PayloadUnreadable:
    """The error for a blob that is not in ``store``."""
    return PayloadUnreadable(f"blob {key!r} is missing from {store.url}", retriable=False)


class LocalBlobStore(BlobStore):
    """Blobs as files under a directory (written whole, then renamed into place).

    Args:
        directory: created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.url = f"file://{self.directory.resolve()}"

    def _path(self, key: str) -> Path:
        return self.directory / _checked(key)

    async def put(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``directory/key`` durably."""
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    async def get(self, key: str) -> bytes:
        """The file's bytes."""
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise missing(self, key) from None
        except OSError as exc:
            raise PayloadUnreadable(f"blob {key!r} of {self.url} cannot be read: {exc}") from exc

    async def delete(self, key: str) -> None:
        """Remove the file."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove the directory ``prefix`` names and what it holds."""
        return await asyncio.to_thread(self._remove_tree, self._path(directory(prefix).rstrip("/")))

    @staticmethod
    def _remove_tree(path: Path) -> int:
        try:
            found = sorted(path.rglob("*"), reverse=True)  # children before their directories
        except FileNotFoundError:
            return 0
        removed = 0
        for child in found:
            if child.is_dir():
                child.rmdir()
            else:
                child.unlink(missing_ok=True)
                removed += 0 if child.name.endswith(".partial") else 1
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
        return removed


class MemoryBlobStore(BlobStore):
    """Blobs in this process's memory, at most ``max_bytes`` in all (oldest dropped first).

    Args:
        max_bytes: the bound on what it holds; a blob dropped to stay under it reads as missing.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.url = "memory://blobs"
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    async def put(self, key: str, data: bytes) -> None:
        """Keep ``data``, dropping the oldest blobs beyond ``max_bytes``."""
        await self.delete(_checked(key))
        self._blobs[key] = data
        self._size += len(data)
        while self._size > self.max_bytes and len(self._blobs) > 1:
            _, dropped = self._blobs.popitem(last=False)
            self._size -= len(dropped)

    async def get(self, key: str) -> bytes:
        """The blob, or :class:`PayloadUnreadable`."""
        try:
            return self._blobs[key]
        except KeyError:
            raise missing(self, key) from None

    async def delete(self, key: str) -> None:
        """Forget the blob."""
        data = self._blobs.pop(key, None)
        if data is not None:
            self._size -= len(data)

    async def delete_prefix(self, prefix: str) -> int:
        """Forget the blobs under ``prefix``."""
        prefix = directory(prefix)
        gone = [key for key in self._blobs if key.startswith(prefix)]
        for key in gone:
            await self.delete(key)
        return len(gone)
