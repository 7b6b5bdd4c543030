"""PppServer <-> PppClient end to end, in memory, time injected."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from sstpd.proto import mschap
from sstpd.proto.ppp.frame import Code
from sstpd.proto.ppp.link import (
    AuthFailed,
    AuthSucceeded,
    LinkDown,
    NetworkUp,
    Phase,
    PppClient,
    PppClientConfig,
    PppEvent,
    PppServer,
    PppServerConfig,
)

LOCAL = IPv4Address("192.168.77.1")
ASSIGNED = IPv4Address("192.168.77.10")
DNS = (IPv4Address("192.168.77.53"), IPv4Address("1.1.1.1"))
USERS = {"alice": mschap.nt_password_hash("wonderland")}


def seeded_random(seed: int) -> Callable[[int], bytes]:
    counter = itertools.count(seed)

    def random(n: int) -> bytes:
        return bytes((next(counter) * 37 + 11) & 0xFF for _ in range(n))

    return random


class Pair:
    def __init__(
        self,
        server_config: PppServerConfig | None = None,
        client_config: PppClientConfig | None = None,
    ) -> None:
        self.now = 0.0
        self.assigned: list[str] = []
        self.server = PppServer(
            server_config or PppServerConfig(local_address=LOCAL, dns=DNS),
            lookup=USERS.get,
            assign_address=self._assign,
            random=seeded_random(1),
            now=self.now,
        )
        self.client = PppClient(
            client_config or PppClientConfig(username="alice", password="wonderland"),
            random=seeded_random(1000),
            now=self.now,
        )
        self.server_events: list[PppEvent] = []
        self.client_events: list[PppEvent] = []
        self.wire: list[tuple[str, bytes]] = []

    def _assign(self, username: str) -> IPv4Address | None:
        self.assigned.append(username)
        return ASSIGNED

    def start(self) -> None:
        self.server.lower_up(self.now)
        self.client.lower_up(self.now)
        self.roundtrip()

    def roundtrip(self) -> None:
        for _ in range(100):
            to_client = self.server.frames_to_send()
            to_server = self.client.frames_to_send()
            if not to_client and not to_server:
                break
            for frame in to_client:
                self.wire.append(("S", frame))
                self.client.receive_frame(frame, self.now)
            for frame in to_server:
                self.wire.append(("C", frame))
                self.server.receive_frame(frame, self.now)
        self.server_events += self.server.pop_events()
        self.client_events += self.client.pop_events()

    def run_until(self, end: float) -> None:
        """Fire timers of both ends in deadline order until ``end``."""
        while True:
            deadlines = [t for t in (self.server.get_timer(), self.client.get_timer()) if t]
            if not deadlines or min(deadlines) > end:
                break
            self.now = max(self.now, min(deadlines))
            self.server.handle_timer(self.now)
            self.client.handle_timer(self.now)
            self.roundtrip()
        self.now = end


METHODS = ["eap-mschapv2", "mschapv2"]


def only(method: str, **kw: object) -> PppClientConfig:
    settings: dict[str, object] = {"username": "alice", "password": "wonderland"}
    settings.update(kw)
    return PppClientConfig(auth_methods=(method,), **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_end_to_end_identical_hlak_and_network_up(method: str) -> None:
    pair = Pair(client_config=only(method))
    pair.start()
    s_auth, s_net = pair.server_events
    c_auth, c_net = pair.client_events
    assert isinstance(s_auth, AuthSucceeded) and isinstance(c_auth, AuthSucceeded)
    assert s_auth.method == c_auth.method == method
    assert s_auth.hlak == c_auth.hlak and len(s_auth.hlak) == 32 and any(s_auth.hlak)
    assert s_net == NetworkUp(LOCAL, ASSIGNED, DNS)
    assert c_net == NetworkUp(ASSIGNED, LOCAL, DNS)
    assert pair.assigned == ["alice"]
    for end in (pair.server, pair.client):
        assert end.phase is Phase.NETWORK and end.is_network_up
        assert end.auth_method == method and end.username == "alice"
    assert pair.server.peer_address == ASSIGNED
    assert pair.client.peer_address == LOCAL and pair.client.local_address == ASSIGNED
    assert pair.server.get_timer() is None and pair.client.get_timer() is None
    assert all(frame[:2] == b"\xff\x03" for _, frame in pair.wire)


def test_hlak_matches_independent_computation() -> None:
    pair = Pair(client_config=only("mschapv2"))
    pair.start()
    response = next(f for who, f in pair.wire if who == "C" and f[2:4] == b"\xc2\x23")
    nt_response = response[4 + 4 + 1 + 24 : 4 + 4 + 1 + 48]
    hlak = mschap.hlak(USERS["alice"], nt_response)
    assert pair.server_events[0] == AuthSucceeded("alice", "mschapv2", hlak)


def test_eap_hlak_is_the_mschapv2_hlak_of_the_same_response() -> None:
    pair = Pair()  # both ends' defaults: EAP-MS-CHAP-V2 first
    pair.start()
    eap = [f for who, f in pair.wire if who == "C" and f[2:4] == b"\xc2\x27"]
    response = next(f for f in eap if f[8] == 26 and f[9] == 2)
    nt_response = response[9 + 4 + 1 + 24 : 9 + 4 + 1 + 48]
    hlak = mschap.hlak(USERS["alice"], nt_response)
    assert pair.server_events[0] == AuthSucceeded("alice", "eap-mschapv2", hlak)
    assert pair.client_events[0] == AuthSucceeded("alice", "eap-mschapv2", hlak)


def test_pap_end_to_end_zero_hlak() -> None:
    pair = Pair(
        client_config=PppClientConfig(
            username="alice", password="wonderland", auth_methods=("pap",)
        )
    )
    pair.start()
    assert pair.server_events[0] == AuthSucceeded("alice", "pap", bytes(32))
    assert pair.client_events[0] == AuthSucceeded("alice", "pap", bytes(32))
    assert isinstance(pair.server_events[1], NetworkUp)
    assert isinstance(pair.client_events[1], NetworkUp)


def test_pap_only_server() -> None:
    pair = Pair(server_config=PppServerConfig(local_address=LOCAL, auth_methods=("pap",)))
    pair.start()
    assert [type(e) for e in pair.client_events] == [AuthSucceeded, NetworkUp]
    assert pair.client.auth_method == "pap"


def test_domain_prefixed_login() -> None:
    pair = Pair(client_config=PppClientConfig(username="CORP\\alice", password="wonderland"))
    pair.start()
    assert pair.server_events[0].username == "alice"  # type: ignore[union-attr]
    assert pair.client_events[0].username == "CORP\\alice"  # type: ignore[union-attr]
    assert pair.server_events[0].hlak == pair.client_events[0].hlak  # type: ignore[union-attr]
    assert pair.assigned == ["alice"]


def test_client_with_nt_hash_only() -> None:
    cfg = PppClientConfig(username="alice", nt_hash=USERS["alice"])
    pair = Pair(client_config=cfg)
    pair.start()
    assert [type(e) for e in pair.client_events] == [AuthSucceeded, NetworkUp]


@pytest.mark.parametrize("method", METHODS)
def test_wrong_password_fails_both_ends_and_link_goes_down(method: str) -> None:
    pair = Pair(client_config=only(method, password="wrong"))
    pair.start()
    assert pair.client_events[0] == AuthFailed("alice", method, 691, "Authentication failure")
    assert pair.server_events[0] == AuthFailed("alice", method, 691, "authentication failure")
    pair.run_until(20.0)
    assert pair.server_events[-1] == LinkDown("authentication failed")
    assert isinstance(pair.client_events[-1], LinkDown)
    assert [type(e) for e in pair.server_events] == [AuthFailed, LinkDown]
    assert pair.server.phase is Phase.DEAD and pair.client.phase is Phase.DEAD
    assert not any(isinstance(e, NetworkUp) for e in pair.client_events)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_user_fails_like_wrong_password(method: str) -> None:
    pair = Pair(client_config=only(method, username="mallory", password="x"))
    pair.start()
    assert pair.client_events[0] == AuthFailed("mallory", method, 691, "Authentication failure")
    assert pair.server_events[0] == AuthFailed("mallory", method, 691, "authentication failure")


def test_pap_wrong_password() -> None:
    cfg = PppClientConfig(username="alice", password="wrong", auth_methods=("pap",))
    pair = Pair(client_config=cfg)
    pair.start()
    assert isinstance(pair.client_events[0], AuthFailed) and pair.client_events[0].code == 691
    pair.run_until(20.0)
    assert pair.server_events == [
        AuthFailed("alice", "pap", 691, "authentication failure"),
        LinkDown("authentication failed"),
    ]
    assert isinstance(pair.client_events[-1], LinkDown)


@pytest.mark.parametrize("method", METHODS)
def test_retry_allowed_then_right_password_succeeds(method: str) -> None:
    server_cfg = PppServerConfig(local_address=LOCAL, auth_retries=1)
    pair = Pair(server_cfg, only(method, password="wrong"))
    pair.start()
    assert [type(e) for e in pair.client_events] == [AuthFailed]
    assert pair.server.phase is Phase.AUTHENTICATE
    assert pair.client.retry_authentication("wonderland", pair.now)
    pair.roundtrip()
    assert [type(e) for e in pair.server_events] == [AuthFailed, AuthSucceeded, NetworkUp]
    assert [type(e) for e in pair.client_events] == [AuthFailed, AuthSucceeded, NetworkUp]
    assert pair.server_events[1].hlak == pair.client_events[1].hlak  # type: ignore[union-attr]


@pytest.mark.parametrize("method", METHODS)
def test_retry_allowed_but_wrong_again_ends_link(method: str) -> None:
    server_cfg = PppServerConfig(local_address=LOCAL, auth_retries=1)
    pair = Pair(server_cfg, only(method, password="wrong"))
    pair.start()
    assert pair.client.retry_authentication("still wrong", pair.now)
    pair.roundtrip()
    pair.run_until(20.0)
    assert [type(e) for e in pair.server_events] == [AuthFailed, AuthFailed, LinkDown]


@pytest.mark.parametrize("method", METHODS)
def test_no_retry_attempt_times_out(method: str) -> None:
    server_cfg = PppServerConfig(local_address=LOCAL, auth_retries=1, auth_timeout=10.0)
    pair = Pair(server_cfg, only(method, password="wrong"))
    pair.start()
    pair.run_until(30.0)
    assert pair.server_events[-1] == LinkDown("authentication timeout")
    assert isinstance(pair.client_events[-1], LinkDown)


def test_lcp_echo_answered() -> None:
    pair = Pair()
    pair.start()
    magic = pair.client.lcp_handler.magic.to_bytes(4, "big")
    pair.client.lcp.send_packet(Code.ECHO_REQUEST, magic + b"ping")
    pair.roundtrip()
    assert pair.client.lcp_handler.echo_replies == 1
    reply = pair.wire[-1][1]
    assert reply[2:4] == b"\xc0\x21" and reply[4] == Code.ECHO_REPLY
    assert reply[8:12] == pair.server.lcp_handler.magic.to_bytes(4, "big")
    assert reply[12:] == b"ping"


def test_ip_frames_are_not_the_links() -> None:
    """IPv4 is the session's data path (proto.datapath): the link counts a stray frame and
    neither answers it nor turns it into an event."""
    pair = Pair()
    pair.start()
    assert pair.server.is_network_up and pair.client.is_network_up
    pair.client.pop_events(), pair.server.pop_events()
    sent = len(pair.wire)
    dropped = pair.client.dropped, pair.server.dropped
    pair.client.receive_frame(b"\xff\x03\x00\x21" + b"E-from-server", pair.now)
    pair.server.receive_frame(b"\x21" + b"E-from-client", pair.now)
    assert pair.client.pop_events() == [] and pair.server.pop_events() == []
    assert (pair.client.dropped, pair.server.dropped) == (dropped[0] + 1, dropped[1] + 1)
    pair.roundtrip()
    assert len(pair.wire) == sent  # no Protocol-Reject


def test_server_terminates() -> None:
    pair = Pair()
    pair.start()
    pair.server.close("administrative shutdown", pair.now)
    assert pair.server.phase is Phase.TERMINATE
    pair.roundtrip()
    assert pair.server_events[-1] == LinkDown("administrative shutdown")
    pair.run_until(10.0)
    assert pair.client_events[-1] == LinkDown("terminated by peer")
    assert not pair.server.is_network_up and not pair.client.is_network_up


def test_client_terminates() -> None:
    pair = Pair()
    pair.start()
    pair.client.close("user hung up", pair.now)
    pair.roundtrip()
    assert pair.client_events[-1] == LinkDown("user hung up")
    pair.run_until(10.0)
    assert pair.server_events[-1] == LinkDown("terminated by peer")
    # terminal: nothing more happens
    pair.server.receive_frame(b"\xff\x03\xc0\x21\x01\x01\x00\x04", pair.now)
    assert pair.server.frames_to_send() == [] and pair.server.get_timer() is None


def test_close_before_lcp_opens_and_lower_down() -> None:
    pair = Pair()
    pair.server.lower_up(0.0)
    pair.server.close("bye", 0.0)
    assert pair.server.frames_to_send()[-1][4] == Code.TERMINATE_REQUEST
    pair.server.lower_down(1.0)
    assert pair.server.pop_events() == [LinkDown("bye")]
    pair2 = Pair()
    pair2.start()
    pair2.server.lower_down(1.0)
    assert pair2.server.pop_events() == [LinkDown("lower layer down")]
    pair2.server.lower_down(2.0)
    assert pair2.server.pop_events() == []


def test_peer_rejecting_ipcp_closes_link() -> None:
    pair = Pair()
    pair.start()
    ipcp = b"\x80\x21\x01\x09\x00\x04"
    pair.client.lcp.send_packet(Code.PROTOCOL_REJECT, ipcp)
    pair.roundtrip()
    pair.run_until(20.0)
    assert pair.server_events[-1] == LinkDown("no network protocol running")
    assert isinstance(pair.client_events[-1], LinkDown)


def test_lcp_renegotiation_requires_new_authentication() -> None:
    pair = Pair()
    pair.start()
    # a fresh Configure-Request in Opened restarts LCP (RFC 1661: tld, scr, sca)
    pair.server.receive_frame(bytes.fromhex("ff03c0210163000a05060badcafe"), pair.now)
    assert pair.server.phase is Phase.ESTABLISH and not pair.server.is_network_up
    pair.roundtrip()
    pair.run_until(15.0)
    kinds = [type(e) for e in pair.server_events]
    assert kinds == [AuthSucceeded, NetworkUp, AuthSucceeded, NetworkUp]
    assert pair.server.phase is Phase.NETWORK and pair.client.phase is Phase.NETWORK
