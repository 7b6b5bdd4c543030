"""Tunnel.open reports why the server refused the session, whatever state the transport is in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sstpd.aio.client import ClientOptions, ClientProtocol, ConnectError, Tunnel


class ClosedTransport:
    """Like Python 3.11.2's SSL transport after close() ran twice: abort() raises."""

    def __init__(self) -> None:
        self.aborted = False

    def is_closing(self) -> bool:
        return True

    def abort(self) -> None:
        raise AttributeError("'NoneType' object has no attribute '_abort'")


class OpenTransport(ClosedTransport):
    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize("transport_cls", [ClosedTransport, OpenTransport])
def test_refused_session_raises_connect_error(transport_cls: type[ClosedTransport]) -> None:
    transport = transport_cls()

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def create_connection(factory: Any, *args: Any, **kw: Any) -> Any:
            proto: ClientProtocol = factory()
            proto.transport = transport  # type: ignore[assignment]
            proto.opened.set_exception(ConnectError("authentication failed: E=691", 691))
            return transport, proto

        loop.create_connection = create_connection  # type: ignore[method-assign]
        opts = ClientOptions(host="192.0.2.1", user="alice", password="wrong", tls=False)
        await Tunnel.open(opts)

    with pytest.raises(ConnectError, match="E=691"):
        asyncio.run(run())
    assert transport.aborted == (transport_cls is OpenTransport)
