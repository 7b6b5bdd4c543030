"""Hypothesis: decoders raise only ParseError; the PPP ends never raise on peer input."""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.frame import Packet, Protocol, decode_frame, decode_options
from sstpd.proto.ppp.link import PppClient, PppClientConfig, PppServer, PppServerConfig

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=64))
def test_decoders_raise_only_parse_error(data: bytes) -> None:
    for decode in (decode_frame, Packet.decode, decode_options):
        with contextlib.suppress(ParseError):
            decode(data)  # type: ignore[operator]


def rng() -> Callable[[int], bytes]:
    counter = itertools.count(3)
    return lambda n: bytes((next(counter) * 91 + 7) & 0xFF for _ in range(n))


def make_server(**kw: object) -> PppServer:
    return PppServer(
        PppServerConfig(local_address=IPv4Address("10.0.0.1"), **kw),  # type: ignore[arg-type]
        lookup={"u": mschap.nt_password_hash("p")}.get,
        assign_address=lambda user: IPv4Address("10.0.0.2"),
        random=rng(),
        now=0.0,
    )


def make_client(password: str = "p") -> PppClient:
    return PppClient(PppClientConfig(username="u", password=password), random=rng(), now=0.0)


def connected(stage: str) -> tuple[PppServer, PppClient]:
    """A pair advanced to ``stage``: establish, authenticate or network."""
    server, client = make_server(), make_client()
    server.lower_up(0.0)
    client.lower_up(0.0)
    for _ in range(40):
        if stage == "establish":
            break
        if stage == "authenticate" and server.phase.value == "Authenticate":
            break
        a, b = server.frames_to_send(), client.frames_to_send()
        if not a and not b:
            break
        for f in a:
            client.receive_frame(f, 0.0)
        for f in b:
            server.receive_frame(f, 0.0)
    server.frames_to_send()
    server.pop_events()
    return server, client


protocols = st.sampled_from([int(p) for p in Protocol] + [0x0031, 0xC025, 0x8207])
options = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=8)).map(
        lambda t: bytes([t[0], len(t[1]) + 2]) + t[1]
    ),
    max_size=5,
).map(b"".join)
structured_frames = st.builds(
    lambda proto, code, ident, body, acfc: (
        (b"" if acfc else b"\xff\x03")
        + struct.pack("!H", proto)
        + Packet(code, ident, body).encode()
    ),
    protocols,
    st.integers(0, 14),
    st.integers(0, 255),
    st.one_of(options, st.binary(max_size=60)),
    st.booleans(),
)
frames = st.one_of(st.binary(max_size=80), structured_frames)
steps = st.lists(st.tuples(frames, st.floats(0, 5)), max_size=12)


@FUZZ
@given(stage=st.sampled_from(["establish", "authenticate", "network"]), script=steps)
def test_server_never_raises_on_peer_input(stage: str, script: list[tuple[bytes, float]]) -> None:
    server, _ = connected(stage)
    now = 0.0
    for frame, dt in script:
        now += dt
        server.receive_frame(frame, now)
        server.handle_timer(now)
        for out in server.frames_to_send():
            assert out[:2] == b"\xff\x03"
            decode_frame(out)
        server.pop_events()
        timer = server.get_timer()
        assert timer is None or timer >= now


@FUZZ
@given(script=steps)
def test_client_never_raises_on_peer_input(script: list[tuple[bytes, float]]) -> None:
    client = make_client()
    client.lower_up(0.0)
    now = 0.0
    for frame, dt in script:
        now += dt
        client.receive_frame(frame, now)
        client.handle_timer(now)
        client.frames_to_send()
        client.pop_events()


@FUZZ
@given(frames_=st.lists(st.binary(max_size=80), max_size=6))
def test_raw_bytes_to_fresh_server(frames_: list[bytes]) -> None:
    server = make_server()
    server.lower_up(0.0)
    for f in frames_:
        server.receive_frame(f, 1.0)
    server.frames_to_send()
