"""What an SSTP connection tells the I/O layer (``pop_events``), its timer values
(``Timeouts``), its states (``State``) and the types of the transition tables."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sstpd.proto.outcome import Outcome
from sstpd.proto.sstp.constants import HashProtocol, MessageType
from sstpd.proto.sstp.packets import ControlMessage


@dataclass(frozen=True)
class Timeouts:
    """Timer values in seconds (§3.1.2, §3.2.2.1, §3.3.2.1, §4.1)."""

    http: float = 60.0
    negotiation: float = 60.0
    hello: float = 60.0
    abort1: float = 3.0
    abort2: float = 1.0
    disconnect1: float = 5.0
    disconnect2: float = 1.0


@dataclass(frozen=True)
class RequestAccepted:
    """HTTP phase done: server answered (or client received) 200."""

    correlation_id: str | None
    host: str | None


@dataclass(frozen=True)
class RequestRejected:
    """HTTP phase refused with ``status`` (server: sent; client: received)."""

    status: int
    reason: str


@dataclass(frozen=True)
class CallConnectRequested:
    """Server: a valid Call Connect Request was acked; start PPP (Lower Link Up)."""


@dataclass(frozen=True)
class PppFrameReceived:
    frame: bytes


@dataclass(frozen=True)
class CallConnected:
    """Server: crypto binding verified. Client: Call Connected sent. PPP data may flow."""

    hash_protocol: HashProtocol


@dataclass(frozen=True)
class CallConnectAcked:
    """Client: Call Connect Ack received; start PPP."""

    hash_protocols: int
    nonce: bytes


@dataclass(frozen=True)
class ConnectionClosed:
    """Terminal. ``status`` is the SSTP Status that ended the call, when there was one;
    ``outcome`` what it means for a call that never opened (a timer, the binding, ...)."""

    reason: str
    status: int | None
    graceful: bool
    outcome: Outcome = Outcome.ABORTED


Event = (
    RequestAccepted
    | RequestRejected
    | CallConnectRequested
    | PppFrameReceived
    | CallConnected
    | CallConnectAcked
    | ConnectionClosed
)


@enum.unique
class State(enum.IntEnum):
    """§3.1.1.1, §3.2.1.1.1, §3.3.1.1.1; HTTP_PENDING is the HTTP phase before them."""

    CALL_DISCONNECTED = 0
    HTTP_PENDING = 1
    SERVER_CONNECT_REQUEST_PENDING = 2
    SERVER_CALL_CONNECTED_PENDING = 3
    SERVER_CALL_CONNECTED = 4
    CLIENT_CONNECT_REQUEST_SENT = 5
    CLIENT_CONNECT_ACK_RECEIVED = 6
    CLIENT_CALL_CONNECTED = 7
    CALL_ABORT_PENDING = 8
    CALL_ABORT_TIMEOUT_PENDING = 9
    CALL_DISCONNECT_ACK_PENDING = 10
    CALL_DISCONNECT_TIMEOUT_PENDING = 11


#: Unexpected messages are ignored here instead of aborting.
TEARDOWN_STATES = frozenset(
    {
        State.CALL_ABORT_PENDING,
        State.CALL_ABORT_TIMEOUT_PENDING,
        State.CALL_DISCONNECT_ACK_PENDING,
        State.CALL_DISCONNECT_TIMEOUT_PENDING,
    }
)

#: A handler of a received control message: ``handler(connection, msg, payload, now)``.
Handler = Callable[[Any, ControlMessage, bytes, float], None]
#: What an expired timer does: ``action(connection, now)``.
TimerAction = Callable[[Any, float], None]
Transitions = dict[tuple[State, MessageType], Handler]
