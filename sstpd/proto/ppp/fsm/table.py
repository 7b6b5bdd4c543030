"""The RFC 1661 §4.1 automaton as data: its states, events, actions and transition table.

Kept apart from the engine (:mod:`.automaton`) because it is a transcription, not code:
it is checked line by line against the RFC's table, with the RFC's names, and changes
only if the RFC does. The engine looks rows up here and never encodes a transition itself.

:data:`TRANSITIONS` maps ``(State, FsmEvent)`` to ``(actions, next State)``. A pair
missing from the table is an event the RFC calls impossible in that state ("-"); the
engine counts it in ``ignored`` and changes nothing. The passive/restart options ("p",
"r") are not implemented. :data:`TIMED_STATES` are the states in which the restart timer
runs (those waiting for an answer to a Configure- or Terminate-Request); entering any
other stops it.
"""

from __future__ import annotations

import enum

__all__ = ["TIMED_STATES", "TRANSITIONS", "Action", "FsmEvent", "State"]


@enum.unique
class State(enum.IntEnum):
    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


@enum.unique
class FsmEvent(enum.Enum):
    """The RFC 1661 §4.1 events (named ``FsmEvent``: the session's events are other things)."""

    UP = "Up"
    DOWN = "Down"
    OPEN = "Open"
    CLOSE = "Close"
    TO_PLUS = "TO+"
    TO_MINUS = "TO-"
    RCR_PLUS = "RCR+"
    RCR_MINUS = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_PLUS = "RXJ+"
    RXJ_MINUS = "RXJ-"
    RXR = "RXR"


@enum.unique
class Action(enum.Enum):
    TLU = "tlu"  # This-Layer-Up
    TLD = "tld"  # This-Layer-Down
    TLS = "tls"  # This-Layer-Started
    TLF = "tlf"  # This-Layer-Finished
    IRC = "irc"  # Initialize-Restart-Count
    ZRC = "zrc"  # Zero-Restart-Count
    SCR = "scr"  # Send-Configure-Request
    SCA = "sca"  # Send-Configure-Ack
    SCN = "scn"  # Send-Configure-Nak/Rej
    STR = "str"  # Send-Terminate-Request
    STA = "sta"  # Send-Terminate-Ack
    SCJ = "scj"  # Send-Code-Reject
    SER = "ser"  # Send-Echo-Reply


S, E, A = State, FsmEvent, Action
_T = dict[tuple[State, FsmEvent], tuple[tuple[Action, ...], State]]

#: RFC 1661 §4.1 state transition table.
TRANSITIONS: _T = {
    (S.INITIAL, E.UP): ((), S.CLOSED),
    (S.INITIAL, E.OPEN): ((A.TLS,), S.STARTING),
    (S.INITIAL, E.CLOSE): ((), S.INITIAL),
    (S.STARTING, E.UP): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.STARTING, E.OPEN): ((), S.STARTING),
    (S.STARTING, E.CLOSE): ((A.TLF,), S.INITIAL),
    # Closed
    (S.CLOSED, E.DOWN): ((), S.INITIAL),
    (S.CLOSED, E.OPEN): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.CLOSED, E.CLOSE): ((), S.CLOSED),
    (S.CLOSED, E.RCR_PLUS): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCR_MINUS): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCA): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCN): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RTR): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RTA): ((), S.CLOSED),
    (S.CLOSED, E.RUC): ((A.SCJ,), S.CLOSED),
    (S.CLOSED, E.RXJ_PLUS): ((), S.CLOSED),
    (S.CLOSED, E.RXJ_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSED, E.RXR): ((), S.CLOSED),
    # Stopped
    (S.STOPPED, E.DOWN): ((A.TLS,), S.STARTING),
    (S.STOPPED, E.OPEN): ((), S.STOPPED),
    (S.STOPPED, E.CLOSE): ((), S.CLOSED),
    (S.STOPPED, E.RCR_PLUS): ((A.IRC, A.SCR, A.SCA), S.ACK_SENT),
    (S.STOPPED, E.RCR_MINUS): ((A.IRC, A.SCR, A.SCN), S.REQ_SENT),
    (S.STOPPED, E.RCA): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RCN): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RTR): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RTA): ((), S.STOPPED),
    (S.STOPPED, E.RUC): ((A.SCJ,), S.STOPPED),
    (S.STOPPED, E.RXJ_PLUS): ((), S.STOPPED),
    (S.STOPPED, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPED, E.RXR): ((), S.STOPPED),
    # Closing
    (S.CLOSING, E.DOWN): ((), S.INITIAL),
    (S.CLOSING, E.OPEN): ((), S.STOPPING),
    (S.CLOSING, E.CLOSE): ((), S.CLOSING),
    (S.CLOSING, E.TO_PLUS): ((A.STR,), S.CLOSING),
    (S.CLOSING, E.TO_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RCR_PLUS): ((), S.CLOSING),
    (S.CLOSING, E.RCR_MINUS): ((), S.CLOSING),
    (S.CLOSING, E.RCA): ((), S.CLOSING),
    (S.CLOSING, E.RCN): ((), S.CLOSING),
    (S.CLOSING, E.RTR): ((A.STA,), S.CLOSING),
    (S.CLOSING, E.RTA): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RUC): ((A.SCJ,), S.CLOSING),
    (S.CLOSING, E.RXJ_PLUS): ((), S.CLOSING),
    (S.CLOSING, E.RXJ_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RXR): ((), S.CLOSING),
    # Stopping
    (S.STOPPING, E.DOWN): ((), S.STARTING),
    (S.STOPPING, E.OPEN): ((), S.STOPPING),
    (S.STOPPING, E.CLOSE): ((), S.CLOSING),
    (S.STOPPING, E.TO_PLUS): ((A.STR,), S.STOPPING),
    (S.STOPPING, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RCR_PLUS): ((), S.STOPPING),
    (S.STOPPING, E.RCR_MINUS): ((), S.STOPPING),
    (S.STOPPING, E.RCA): ((), S.STOPPING),
    (S.STOPPING, E.RCN): ((), S.STOPPING),
    (S.STOPPING, E.RTR): ((A.STA,), S.STOPPING),
    (S.STOPPING, E.RTA): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RUC): ((A.SCJ,), S.STOPPING),
    (S.STOPPING, E.RXJ_PLUS): ((), S.STOPPING),
    (S.STOPPING, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RXR): ((), S.STOPPING),
    # Req-Sent
    (S.REQ_SENT, E.DOWN): ((), S.STARTING),
    (S.REQ_SENT, E.OPEN): ((), S.REQ_SENT),
    (S.REQ_SENT, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.REQ_SENT, E.TO_PLUS): ((A.SCR,), S.REQ_SENT),
    (S.REQ_SENT, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.REQ_SENT, E.RCR_PLUS): ((A.SCA,), S.ACK_SENT),
    (S.REQ_SENT, E.RCR_MINUS): ((A.SCN,), S.REQ_SENT),
    (S.REQ_SENT, E.RCA): ((A.IRC,), S.ACK_RCVD),
    (S.REQ_SENT, E.RCN): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.REQ_SENT, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.REQ_SENT, E.RTA): ((), S.REQ_SENT),
    (S.REQ_SENT, E.RUC): ((A.SCJ,), S.REQ_SENT),
    (S.REQ_SENT, E.RXJ_PLUS): ((), S.REQ_SENT),
    (S.REQ_SENT, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.REQ_SENT, E.RXR): ((), S.REQ_SENT),
    # Ack-Rcvd
    (S.ACK_RCVD, E.DOWN): ((), S.STARTING),
    (S.ACK_RCVD, E.OPEN): ((), S.ACK_RCVD),
    (S.ACK_RCVD, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.ACK_RCVD, E.TO_PLUS): ((A.SCR,), S.REQ_SENT),
    (S.ACK_RCVD, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_RCVD, E.RCR_PLUS): ((A.SCA, A.TLU), S.OPENED),
    (S.ACK_RCVD, E.RCR_MINUS): ((A.SCN,), S.ACK_RCVD),
    (S.ACK_RCVD, E.RCA): ((A.SCR,), S.REQ_SENT),  # crossed connection ("x")
    (S.ACK_RCVD, E.RCN): ((A.SCR,), S.REQ_SENT),
    (S.ACK_RCVD, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.ACK_RCVD, E.RTA): ((), S.REQ_SENT),
    (S.ACK_RCVD, E.RUC): ((A.SCJ,), S.ACK_RCVD),
    (S.ACK_RCVD, E.RXJ_PLUS): ((), S.REQ_SENT),
    (S.ACK_RCVD, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_RCVD, E.RXR): ((), S.ACK_RCVD),
    # Ack-Sent
    (S.ACK_SENT, E.DOWN): ((), S.STARTING),
    (S.ACK_SENT, E.OPEN): ((), S.ACK_SENT),
    (S.ACK_SENT, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.ACK_SENT, E.TO_PLUS): ((A.SCR,), S.ACK_SENT),
    (S.ACK_SENT, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_SENT, E.RCR_PLUS): ((A.SCA,), S.ACK_SENT),
    (S.ACK_SENT, E.RCR_MINUS): ((A.SCN,), S.REQ_SENT),
    (S.ACK_SENT, E.RCA): ((A.IRC, A.TLU), S.OPENED),
    (S.ACK_SENT, E.RCN): ((A.IRC, A.SCR), S.ACK_SENT),
    (S.ACK_SENT, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.ACK_SENT, E.RTA): ((), S.ACK_SENT),
    (S.ACK_SENT, E.RUC): ((A.SCJ,), S.ACK_SENT),
    (S.ACK_SENT, E.RXJ_PLUS): ((), S.ACK_SENT),
    (S.ACK_SENT, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_SENT, E.RXR): ((), S.ACK_SENT),
    # Opened
    (S.OPENED, E.DOWN): ((A.TLD,), S.STARTING),
    (S.OPENED, E.OPEN): ((), S.OPENED),
    (S.OPENED, E.CLOSE): ((A.TLD, A.IRC, A.STR), S.CLOSING),
    (S.OPENED, E.RCR_PLUS): ((A.TLD, A.SCR, A.SCA), S.ACK_SENT),
    (S.OPENED, E.RCR_MINUS): ((A.TLD, A.SCR, A.SCN), S.REQ_SENT),
    (S.OPENED, E.RCA): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RCN): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RTR): ((A.TLD, A.ZRC, A.STA), S.STOPPING),
    (S.OPENED, E.RTA): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RUC): ((A.SCJ,), S.OPENED),
    (S.OPENED, E.RXJ_PLUS): ((), S.OPENED),
    (S.OPENED, E.RXJ_MINUS): ((A.TLD, A.IRC, A.STR), S.STOPPING),
    (S.OPENED, E.RXR): ((A.SER,), S.OPENED),
}
del S, E, A

TIMED_STATES = frozenset(
    {State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT}
)
