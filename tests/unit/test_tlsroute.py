"""ClientHello routing on a real loopback listener (ephemeral ports, no namespaces).

The listener's own accept loop with a ``TlsRouter``: validators (ALPN exactly
``acme-tls/1`` for a pending name) get the challenge certificate with ``acme-tls/1``
selected; every other client the normal certificate; bad, slow and truncated hellos are
closed within the timeout and the listener goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sstpd import acmeclient, certs
from sstpd.aio import tlsroute
from sstpd.aio.listener import Listener, Pending
from sstpd.aio.tlsroute import TlsRouter
from sstpd.proto import clienthello

NAME = "sstp.example.test"
DATA = Path(__file__).parent / "data" / "clienthello"
ACME_EXT = bytes.fromhex("06082b0601050507011f")


class Normal(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"sstp")  # type: ignore[attr-defined]


@pytest.fixture
def normal_ctx(tmp_path: Path) -> ssl.SSLContext:
    certs.generate_self_signed(
        str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), common_name=NAME, sans=[NAME]
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    return ctx


class OpenGate:
    """Admits everything (the budgets have tests of their own)."""

    setup_timeout = 2.0

    def admit(self, source: str) -> str | None:
        return None

    def hold(self, source: str, deadline: float) -> Pending:
        return Pending(source, deadline)

    def release(self, pending: Pending) -> None:
        pending.released = True

    def count_outcome(self, outcome: str, source: str) -> None:
        pass


class Setup:
    def __init__(self, listener: Listener, router: TlsRouter) -> None:
        self.listener = listener
        self.router = router
        self.port = listener.sock.getsockname()[1]

    async def handshake(
        self, sni: str | None, alpn: list[str] | None
    ) -> tuple[bytes, str | None, bytes]:
        """(served certificate DER, selected ALPN, first application bytes)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=ctx, server_hostname=sni or None),
            5,
        )
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(True)
        chosen = sslobj.selected_alpn_protocol()
        # a validator's connection carries no data: the validator closes it
        data = b"" if chosen else await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        return der, chosen, data


def with_listener(body: Callable[[Setup], Awaitable[None]]) -> Callable[[ssl.SSLContext], None]:
    """A test running ``body`` against a fresh listener (2 s handshake timeout)."""

    def test(normal_ctx: ssl.SSLContext) -> None:
        async def main() -> None:
            router = TlsRouter()
            listener = Listener(
                "127.0.0.1", 0, lambda src, pending: Normal(), normal_ctx, OpenGate(), router=router
            )
            try:
                await body(Setup(listener, router))
            finally:
                listener.close()

        asyncio.run(main())

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


def add_challenge(router: TlsRouter, name: str = NAME) -> None:
    cert, key = acmeclient.challenge_certificate(name, "token.thumb")
    router.add_challenge(name, cert, key)


@with_listener
async def test_validator_gets_challenge_everyone_else_normal(setup: Setup) -> None:
    add_challenge(setup.router)
    der, alpn, data = await setup.handshake(NAME, ["acme-tls/1"])
    assert ACME_EXT in der and alpn == "acme-tls/1" and data == b""
    assert hashlib.sha256(b"token.thumb").digest() in der
    # the same name without ALPN, with http/1.1, with acme-tls/1 among others, no SNI
    for sni, offer in [
        (NAME, None),
        (NAME.upper(), None),
        (NAME, ["http/1.1"]),
        (NAME, ["acme-tls/1", "http/1.1"]),
        (NAME, ["http/1.1", "acme-tls/1"]),
        (None, None),
        ("other.test", None),
    ]:
        der, alpn, data = await setup.handshake(sni, offer)
        assert ACME_EXT not in der and alpn is None and data == b"sstp", (sni, offer)
    assert setup.router.challenge_handshakes == 1


@with_listener
async def test_acme_alpn_without_pending_challenge_is_closed(setup: Setup) -> None:
    add_challenge(setup.router, "pending.test")
    for sni in (NAME, None):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await setup.handshake(sni, ["acme-tls/1"])
    setup.router.remove_challenge("pending.test")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await setup.handshake("pending.test", ["acme-tls/1"])
    assert (await setup.handshake(NAME, None))[2] == b"sstp"


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the daemon closed (FIN or RST; unread bytes make it an RST)."""
    t0 = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), seconds)
    except ConnectionResetError:
        data = b""
    assert not data.startswith(b"\x16"), "got a ServerHello"
    return time.monotonic() - t0


@with_listener
async def test_slow_sender_is_closed_within_the_timeout(setup: Setup) -> None:
    hello = (DATA / "python-sni-acme.bin").read_bytes()
    add_challenge(setup.router)
    # earlier tests' unreachable sockets would otherwise close during the wait (seen once:
    # 37 descriptors before, 27 after), hiding a leak as well as faking one
    gc.collect()
    fds = len(os.listdir("/proc/self/fd"))
    reader, writer = await raw(setup.port)
    writer.write(hello[:40])  # a part, then nothing: the 2 s handshake timeout applies
    elapsed = await closed_within(reader, 5)
    assert 1.5 < elapsed < 4
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    # nothing left behind: no task, no descriptor
    assert not setup.listener._tasks
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == fds
    assert (await setup.handshake(NAME, None))[2] == b"sstp"


@with_listener
async def test_truncated_hello_then_eof_is_closed_at_once(setup: Setup) -> None:
    hello = (DATA / "openssl-sni-acme.bin").read_bytes()
    reader, writer = await raw(setup.port)
    writer.write(hello[:100])
    writer.write_eof()
    assert await closed_within(reader, 5) < 1.5
    writer.close()


@with_listener
async def test_garbage_goes_to_openssl_and_is_refused(setup: Setup) -> None:
    for junk in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello
        b"\x16\x03\x01\x00\x00",  # empty record
        b"\x16\x03\x01\x00\x04\x01\x01\x00\x00",  # 64 KiB hello announced
    ):
        reader, writer = await raw(setup.port)
        writer.write(junk)
        assert ACME_EXT not in await read_all(reader)
        writer.close()
    assert (await setup.handshake(NAME, None))[2] == b"sstp"


@with_listener
async def test_hello_with_empty_or_huge_alpn_entries_never_gets_challenge(setup: Setup) -> None:
    add_challenge(setup.router)
    bad_alpn = [
        (clienthello.EXT_ALPN, bytes.fromhex("000100")),  # one empty name
        clienthello.alpn_extension([bytes([66]) * 255] * 40),  # 40 names of 255 bytes
        clienthello.alpn_extension([b"acme-tls/1", b"x" * 255]),
    ]
    for ext in bad_alpn:
        hello = clienthello.ClientHello(extensions=(clienthello.server_name_extension(NAME), ext))
        reader, writer = await raw(setup.port)
        writer.write(clienthello.encode(hello))
        assert ACME_EXT not in await read_all(reader)
        writer.close()
    assert setup.router.challenge_handshakes == 0


async def accepted_pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    conn.setblocking(False)
    return cli, conn


def test_fragmented_hello_over_several_segments_is_routed_and_not_consumed() -> None:
    asyncio.run(_fragmented())


async def _fragmented() -> None:
    loop = asyncio.get_running_loop()
    router = TlsRouter()
    add_challenge(router)
    hello = clienthello.encode(
        clienthello.ClientHello(
            extensions=(
                clienthello.server_name_extension(NAME),
                clienthello.alpn_extension([b"acme-tls/1"]),
                (0x1234, bytes(3000)),
            )
        ),
        fragment=700,  # five TLS records
    )
    cli, conn = await accepted_pair()
    try:
        route_task = loop.create_task(router.route(loop, conn, "test", 5.0))
        for i in range(0, len(hello), 500):
            cli.sendall(hello[i : i + 500])
            await asyncio.sleep(0.05)
            if i + 500 < len(hello):
                assert not route_task.done()
        route = await route_task
        assert route is not None and route.challenge
        # nothing was consumed: the TLS layer will read the whole hello
        conn.setblocking(True)
        got = b""
        while len(got) < len(hello):
            got += conn.recv(65536)
        assert got == hello
        # SO_RCVLOWAT is back to 1
        assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
    finally:
        cli.close()
        conn.close()


def test_waiting_for_the_rest_does_not_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """SO_RCVLOWAT: a partial hello wakes the reader once, not in a busy loop."""
    asyncio.run(_no_spin(monkeypatch))


async def _no_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    calls = 0
    real = tlsroute._readable

    async def counting(*args: object) -> None:
        nonlocal calls
        calls += 1
        await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tlsroute, "_readable", counting)
    hello = (DATA / "openssl-sni.bin").read_bytes()
    cli, conn = await accepted_pair()
    try:
        task = loop.create_task(TlsRouter().route(loop, conn, "test", 5.0))
        cli.sendall(hello[:20])
        await asyncio.sleep(0.5)
        assert calls <= 3 and not task.done()
        cli.sendall(hello[20:])
        route = await task
        assert route == tlsroute.NORMAL
        assert calls <= 4
    finally:
        cli.close()
        conn.close()
