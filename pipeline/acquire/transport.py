"""The HTTP transport of the fetcher: httpx's own, with a cheaper idle-connection check.

Before every request it assigns, httpcore's connection pool asks each idle keep-alive connection
whether the server closed it (``get_extra_info("is_readable")``). Through anyio, each such
question builds the stream's whole attribute table, ``getpeername()`` included, and then polls
the socket: on a loopback crawl at concurrency 16 this was a third of the crawl's CPU time.
The wrapper below keeps the raw socket once and answers with one ``poll``; everything else goes
to the stream httpcore made. If httpx's transport is not laid out as expected (a future
version), the transport is used as it is.
"""

from __future__ import annotations

import select
import socket
import ssl
from typing import Any

import httpcore
import httpx


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream whose "is_readable" costs one poll of a socket kept at connect time."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Data or EOF waiting (an idle connection the server closed); a closed socket counts."""
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport (HTTP/1.1 and HTTP/2) with the cheaper idle-connection check."""
    transport = httpx.AsyncHTTPTransport(http2=True, limits=limits)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend) and hasattr(select, "poll"):
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return transport
