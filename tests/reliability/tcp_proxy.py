"""A small asyncio TCP proxy that can cut connections and add latency, for network faults.

Put it in front of a broker that advertises the proxy's address (so every client connection,
metadata-discovered ones included, goes through it). :meth:`TcpProxy.cut` resets every open
connection and refuses new ones (accepted, then closed at once) until :meth:`TcpProxy.restore`;
``latency`` delays every chunk forwarded, in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream``.

    Args:
        upstream: the port to forward to.
        port: the port to listen on (0: any free one; see :attr:`port` after start).
        latency: seconds added to every chunk forwarded.
    """

    def __init__(self, upstream: int, port: int = 0, latency: float = 0.0) -> None:
        self.upstream = upstream
        self.port = port
        self.latency = latency
        self.is_cut = False
        self.connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close everything."""
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`restore`."""
        self.is_cut = True
        self._reset_all()

    def restore(self) -> None:
        """Accept and forward connections again."""
        self.is_cut = False

    def _reset_all(self) -> None:
        for writer in list(self._open):
            transport = writer.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # RST, as a dropped link looks to the peer's next write
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._open |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                if writer not in self._open:
                    break  # cut meanwhile: the chunk is lost with the connection
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
