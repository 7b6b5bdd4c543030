"""``aio.tls.DirectSSLObject``: the C methods bound on the instance behave as the
``ssl.SSLObject`` wrappers do, over memory BIOs and under a real uvloop TLS transport."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import uvloop

from bench import tls_records
from sstpd.aio.tls import DirectSSLObject


def test_the_server_context_wraps_in_direct_objects(tmp_path: Path) -> None:
    server, _si, client, _co = tls_records.pair(tmp_path)
    assert type(server) is DirectSSLObject
    assert type(client) is ssl.SSLObject
    assert server.version() is not None  # the handshake completed


def test_read_pending_write_as_the_wrappers(tmp_path: Path) -> None:
    server, si, client, co = tls_records.pair(tmp_path)
    with pytest.raises(ssl.SSLWantReadError):  # nothing there: the same exception
        server.read(100)
    for chunk in (b"a" * 1404, b"b" * 10, b"c" * 3000):
        client.write(chunk)
    si.write(co.read())
    buf = bytearray(8192)
    view = memoryview(buf)
    got = server.read(len(buf), view)  # one record per read, into the buffer
    assert bytes(buf[:got]) == b"a" * 1404
    assert server.read(5) == b"bbbbb"  # without a buffer: bytes
    assert server.pending() == 5  # the rest of the decrypted record
    assert server.read(100) == b"bbbbb"
    got = server.read(len(buf), view)
    assert bytes(buf[:got]) == b"c" * 3000
    with pytest.raises(ssl.SSLWantReadError):
        server.read(len(buf), view)
    assert server.write(b"reply") == 5


def test_a_uvloop_tls_connection_carries_data_both_ways(tmp_path: Path) -> None:
    sc, cc = tls_records.contexts(tmp_path)
    seen: list[type] = []
    payload = bytes(range(256)) * 781 + b"xyz"  # 199,939 bytes in many records

    async def main() -> bytes:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            seen.append(type(w.get_extra_info("ssl_object")))
            data = await r.readexactly(len(payload))
            w.write(data[::-1])
            await w.drain()
            w.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=sc)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=cc)
        for i in range(0, len(payload), 1404):
            w.write(payload[i : i + 1404])
        back = await r.readexactly(len(payload))
        w.close()
        srv.close()
        await srv.wait_closed()
        assert back == payload[::-1]
        return back

    uvloop.run(asyncio.wait_for(main(), 30))
    assert seen == [DirectSSLObject]
