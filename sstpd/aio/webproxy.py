"""Pass a non-SSTP connection on to the web backend (seed FAQ §1-2).

``WebProxy`` owns the backend TCP connection and pumps bytes between it and the client's
(TLS) transport, with flow control both ways: when one side's write buffer fills up
(asyncio's pause_writing), reading from the other side pauses until it drains.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sstpd.web")


class _Backend(asyncio.Protocol):
    def __init__(self, proxy: WebProxy) -> None:
        self.proxy = proxy

    def data_received(self, data: bytes) -> None:
        client = self.proxy.client
        if client.is_closing():
            return
        client.write(data)

    def pause_writing(self) -> None:
        self.proxy.client.pause_reading()

    def resume_writing(self) -> None:
        self.proxy.client.resume_reading()

    def eof_received(self) -> bool | None:
        self.proxy.client.close()  # flushes, then closes (TLS close_notify)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.backend = None
        if not self.proxy.client.is_closing():
            self.proxy.client.close()


class WebProxy:
    """One client connection handed to the backend ``host``:``port``."""

    def __init__(self, client: asyncio.Transport, host: str, port: int) -> None:
        self.client = client
        self.host, self.port = host, port
        self.backend: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._closed = False

    async def open(self, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._pending.append(first)
        try:
            transport, _ = await loop.create_connection(
                lambda: _Backend(self), self.host, self.port
            )
        except OSError as exc:
            log.warning("web backend %s:%d unreachable: %s", self.host, self.port, exc)
            if not self.client.is_closing():
                self.client.write(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                self.client.close()
            return
        if self._closed:
            transport.close()
            return
        self.backend = transport  # type: ignore[assignment]
        for chunk in self._pending:
            transport.write(chunk)  # type: ignore[attr-defined]
        self._pending.clear()

    def from_client(self, data: bytes) -> None:
        if self.backend is None:
            self._pending.append(data)
            return
        self.backend.write(data)

    def client_pause_writing(self) -> None:
        if self.backend is not None:
            self.backend.pause_reading()

    def client_resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.resume_reading()

    def client_closed(self) -> None:
        self._closed = True
        if self.backend is not None:
            self.backend.close()
