"""SSTP connection state machines, sans-I/O: ``SstpServerConnection`` and ``SstpClientConnection``.

Theory of operation
===================

Section numbers refer to [MS-SSTP] v20240423; docs/protocol/sstp.md §4/§5 summarises them.

One object per TLS connection. The I/O layer feeds the decrypted byte stream to
``receive_data(data, now)`` (or, once ``http_done``, already framed packets to
``receive_packet``), calls ``handle_timer(now)`` when ``get_timer()`` (an absolute deadline)
passes, and after every call writes ``data_to_send()`` and handles ``pop_events()``. Nothing
here reads a clock or does I/O; randomness (the Call Connect Ack nonce, the client's
correlation GUID) comes from the ``random`` callable.

Phases
------
1. HTTP (§3.2.4.1, §4.1): the server waits ``timeouts.http`` for the SSTP_DUPLEX_POST request
   and answers 200 (``RequestAccepted``) or an HTTP error (``RequestRejected`` +
   ``ConnectionClosed``). Bytes after the header block are already SSTP.
2. Call establishment, server (§3.3.1.1.1, §3.3.5.2.2-3)::

       Server_Connect_Request_Pending --Call Connect Request ok--> Ack (fresh nonce),
           Server_Call_Connected_Pending     [CallConnectRequested: start PPP]
       Server_Call_Connected_Pending --Call Connected verified--> Server_Call_Connected
                                                                  [CallConnected]

   A bad Connect Request is NAKed with one Status Info per offending attribute (§3.3.5.2.2);
   the fourth bad one aborts with RETRY_COUNT_EXCEEDED. Each pending state has a negotiation
   timer (§3.3.2.1, 60 s); expiry aborts with NEGOTIATION_TIMEOUT. The Call Connected may
   arrive before PPP has handed over the HLAK (``set_hlak``); it is then kept and verified when
   the key arrives (docs/protocol/sstp.md §6.4). PPP data packets arrive as ``PppFrameReceived``
   from Call_Connected_Pending on; the session layer drops PPP *data* frames until
   ``CallConnected`` (§3.3.5.2.3, note <17>).
   Client (§3.2.1.1.1, §3.2.5.3.2-3): Connect_Request_Sent --Ack--> Connect_Ack_Received
   [CallConnectAcked] --``send_call_connected``--> Client_Call_Connected [CallConnected].
3. Keep-alive (§3.1.2.3, §3.1.6.3), Call_Connected only: the hello timer restarts on every
   received packet (``touch`` for fast-path packets). On expiry send Echo Request; if nothing
   at all arrives within the next interval, close without sending Call Abort.
4. Teardown (§3.1.1.1, §3.3.5.2.4-6). The In_Progress states are transient (send, start a
   timer, move on) and are not represented::

       local abort  -> Call Abort + Status Info, ABORT_TIMER_1  -> Call_Abort_Pending
       Call_Abort_Pending + Call Abort -> ABORT_TIMER_2          -> Call_Abort_Timeout_Pending
       Call Abort received (else) -> Call Abort, ABORT_TIMER_2   -> Call_Abort_Timeout_Pending
       local disconnect -> Call Disconnect, DISCONNECT_TIMER_1   -> Call_Disconnect_Ack_Pending
       Call Disconnect received -> Disconnect Ack, DISCONNECT_TIMER_2
                                                                 -> Call_Disconnect_Timeout_Pending
       Disconnect Ack in Call_Disconnect_Ack_Pending, or any teardown timer -> closed

Rules applied to every received packet (the tables are the whole state machine):

* a framing error (bad version, length < 4) closes at once, sending nothing (§3.1.5.1);
* ``(state, message type)`` found in the role's ``TRANSITIONS`` table -> that handler;
* otherwise, in the four teardown-pending states the message is ignored; in any other state
  the connection aborts with UNACCEPTED_FRAME_RECEIVED (INVALID_FRAME_RECEIVED when the body
  does not decode or the type is unknown) (§3.3.5.2.x "Else if CurrentState has any other
  value");
* data packets are delivered in the role's ``DATA_STATES``, ignored during teardown and abort
  the call anywhere else.

``ConnectionClosed`` is emitted exactly once and is terminal: the I/O layer writes the last
``data_to_send()`` and closes the transport; later input is ignored. ``receive_*`` never
raise on peer input.

The modules: ``events`` (the events, ``Timeouts``, ``State`` and the table types), ``base``
(``SstpConnection``: what both roles share, the shared table rows, ``TIMER_ACTIONS``),
``server`` (``SstpServerConnection``, ``connect_request_problems``,
``SERVER_TRANSITIONS``), ``client`` (``SstpClientConnection``, ``CLIENT_TRANSITIONS``).
"""

from __future__ import annotations

from sstpd.proto.sstp.connection.base import MAX_RETRIES, TIMER_ACTIONS, SstpConnection
from sstpd.proto.sstp.connection.client import CLIENT_TRANSITIONS, SstpClientConnection
from sstpd.proto.sstp.connection.events import (
    TEARDOWN_STATES,
    CallConnectAcked,
    CallConnected,
    CallConnectRequested,
    ConnectionClosed,
    Event,
    Handler,
    PppFrameReceived,
    RequestAccepted,
    RequestRejected,
    State,
    Timeouts,
    TimerAction,
    Transitions,
)
from sstpd.proto.sstp.connection.server import (
    SERVER_TRANSITIONS,
    SstpServerConnection,
    connect_request_problems,
)

__all__ = [
    "CLIENT_TRANSITIONS",
    "MAX_RETRIES",
    "SERVER_TRANSITIONS",
    "TEARDOWN_STATES",
    "TIMER_ACTIONS",
    "CallConnectAcked",
    "CallConnectRequested",
    "CallConnected",
    "ConnectionClosed",
    "Event",
    "Handler",
    "PppFrameReceived",
    "RequestAccepted",
    "RequestRejected",
    "SstpClientConnection",
    "SstpConnection",
    "SstpServerConnection",
    "State",
    "Timeouts",
    "TimerAction",
    "Transitions",
    "connect_request_problems",
]
