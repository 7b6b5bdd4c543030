"""The outcome of a connection travels with its close event: decided where the reason is
made (a timer, the crypto binding, the HTTP parser, a failed login), never parsed back out
of the reason text. The I/O layer counts ``SessionClosed.outcome`` for sessions that never
opened (``stats.handshakes``, ``sstpd_handshakes_total``)."""

from __future__ import annotations

import pytest

from sstpd.aio.stats import OUTCOMES, Stats
from sstpd.proto.guard import PendingBudget
from sstpd.proto.outcome import REFUSALS, Outcome
from sstpd.proto.session import SessionClosed
from sstpd.proto.sstp.connection import ConnectionClosed, State
from sstpd.proto.sstp.constants import HashProtocol, MessageType
from tests.unit import test_session as ts
from tests.unit import test_sstp_connection as tc


def _server_closed(p: ts.Pair) -> SessionClosed:
    closed = [e for e in p.server_events if isinstance(e, SessionClosed)]
    assert len(closed) == 1, p.server_events
    return closed[0]


def _server_session() -> ts.Pair:
    p = ts.Pair()
    p.client.data_to_send()  # the client's HTTP request is not sent: only the server runs
    return p


def test_the_values_are_the_documented_label_values() -> None:
    """``stats`` keys and the ``outcome`` label: renaming a member must not change them."""
    assert [o.value for o in Outcome] == [
        "opened", "auth_failed", "binding_failed", "timeout", "http_rejected", "refused",
        "aborted", "web", "timeout_tls", "timeout_http", "tls_failed", "proxy_header",
        "limit_per_source", "limit_total", "limit_fds", "blocked", "limit_user",
    ]  # fmt: skip
    assert tuple(Outcome) == OUTCOMES and all(isinstance(o, str) for o in OUTCOMES)
    assert f"{Outcome.TIMEOUT_TLS}" == "timeout_tls" and Outcome("web") is Outcome.WEB
    assert {"limit_per_source", "limit_total", "limit_fds"} == REFUSALS


def test_wrong_password_is_auth_failed_whatever_the_reason() -> None:
    p = ts.Pair(password="nope")
    p.run()
    assert _server_closed(p).outcome is Outcome.AUTH_FAILED


def test_wrong_certificate_hash_is_binding_failed() -> None:
    p = ts.Pair(client_hashes={HashProtocol.SHA256: b"\x42" * 32})
    p.run()
    p.server.handle_timer(10.0)  # past the abort timers
    p.server_events += p.server.pop_events()
    closed = _server_closed(p)
    assert closed.outcome is Outcome.BINDING_FAILED and "crypto binding" in closed.reason


def test_bad_http_request_is_http_rejected() -> None:
    p = _server_session()
    p.server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    p.server_events += p.server.pop_events()
    closed = _server_closed(p)
    assert closed.outcome is Outcome.HTTP_REJECTED and closed.reason.startswith("HTTP 4")


def test_http_phase_timer_is_timeout() -> None:
    p = _server_session()
    p.server.handle_timer(61.0)
    p.server_events += p.server.pop_events()
    assert _server_closed(p).outcome is Outcome.TIMEOUT


def test_negotiation_timer_is_timeout_even_when_the_client_then_hangs_up() -> None:
    """The Call Abort for the timeout is pending when the transport goes: the SSTP reason
    (and its outcome) wins over "connection lost"."""
    p = _server_session()
    p.server.receive_data(tc.REQUEST, 0.0)
    p.server.handle_timer(60.0)
    p.server.abort_connection("connection lost", 61.0)
    p.server_events += p.server.pop_events()
    closed = _server_closed(p)
    assert closed.outcome is Outcome.TIMEOUT and "negotiation timed out" in closed.reason


def test_client_going_away_is_aborted_even_if_the_os_says_timed_out() -> None:
    """The old substring rule counted "connection lost: [Errno 110] Connection timed out"
    as a handshake timeout; the transport's error text no longer decides the outcome."""
    p = _server_session()
    p.server.receive_data(tc.REQUEST, 0.0)
    p.server.abort_connection("connection lost: [Errno 110] Connection timed out", 1.0)
    p.server_events += p.server.pop_events()
    assert _server_closed(p).outcome is Outcome.ABORTED


def test_an_earlier_reason_keeps_its_outcome() -> None:
    """``disconnect`` (the I/O layer's reason) wins over the SSTP close that follows."""
    p = _server_session()
    p.server.receive_data(tc.REQUEST, 0.0)
    p.server.disconnect(1.0, "server shutting down")
    p.server.abort_connection("connection lost", 2.0)
    p.server_events += p.server.pop_events()
    closed = _server_closed(p)
    assert (closed.reason, closed.outcome) == ("server shutting down", Outcome.ABORTED)


def test_call_connected_without_a_binding_attribute_is_binding_failed() -> None:
    s, _ = tc.server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.receive_data(tc.ctl(MessageType.CALL_CONNECTED), 1.0)
    s.handle_timer(10.0)
    ev = tc.closed_event(s.pop_events())
    assert isinstance(ev, ConnectionClosed) and ev.outcome is Outcome.BINDING_FAILED


@pytest.mark.parametrize(
    ("per_source", "total", "expected"),
    [(1, 10, Outcome.LIMIT_PER_SOURCE), (10, 1, Outcome.LIMIT_TOTAL), (10, 10, None)],
)
def test_budget_refusals_are_outcomes(per_source: int, total: int, expected: object) -> None:
    b = PendingBudget(total, per_source)
    b.add("192.0.2.1")
    assert b.refusal("192.0.2.1") is expected


def test_stats_count_outcomes_by_member() -> None:
    st = Stats()
    st.outcome(Outcome.BINDING_FAILED)
    st.outcome(Outcome.OPENED)
    assert st.handshakes[Outcome.BINDING_FAILED] == 1 and st.crypto_binding_failures == 1
    assert st.handshakes["opened"] == 1  # a StrEnum key is found by its value too
    assert list(st.handshakes) == list(Outcome)
