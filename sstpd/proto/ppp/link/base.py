"""``LinkBase``: the link itself, whatever its role or phase: the driver API (inputs,
output queues, timers), dispatch of each received frame by protocol with the RFC 1661
rules (§3.5/§3.6 discards, §5.7 Protocol-Reject), the LCP callbacks, notices and the one
``LinkDown``.

What happens once LCP is up (the Authenticate and Network phases) is ``phases.Link``'s;
the two are apart so that each reads in one sitting.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from sstpd.errors import ParseError
from sstpd.proto.ppp.auth.common import MSCHAPV2, PAP
from sstpd.proto.ppp.eap.codec import EAP_MSCHAPV2
from sstpd.proto.ppp.frame import Code, Packet, Protocol, decode_frame, encode_frame
from sstpd.proto.ppp.fsm import Fsm, FsmHandler, State
from sstpd.proto.ppp.ipv6cp import Ipv6cpHandler
from sstpd.proto.ppp.lcp import LcpHandler, LcpListener
from sstpd.proto.ppp.link.events import (
    LinkDown,
    Notice,
    Phase,
    PppClientConfig,
    PppEvent,
    PppServerConfig,
)

#: Identification packets logged one by one; beyond this, one line and then silence.
IDENTIFICATION_LOGGED = 8
#: EAP oddities the link itself logs (the authenticator has its own limit).
EAP_NOTICES = 4


class Auth(TypingProtocol):
    method: str

    def start(self, now: float) -> None: ...
    def receive(self, packet: Packet, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


AUTH_PROTOCOL = {MSCHAPV2: Protocol.CHAP, PAP: Protocol.PAP, EAP_MSCHAPV2: Protocol.EAP}

#: The largest PPP packet (code to end of data) one SSTP data packet can carry: 4095 bytes
#: of SSTP packet minus its 4-byte header minus FF 03 and the 2-byte protocol. Whatever
#: MRU the peer announced, rejected or reflected packets are truncated to this (RFC 1661
#: §5.6/§5.7 allow truncation).
MAX_CARRIED_PACKET = 4095 - 4 - 4


class LinkBase(LcpListener):
    """What server and client share: LCP, dispatch, timers, output queues."""

    _is_server = False

    def __init__(
        self,
        cfg: PppServerConfig | PppClientConfig,
        auth_methods: tuple[str, ...],
        random: Callable[[int], bytes],
        now: float,
    ) -> None:
        self._cfg = cfg
        self._random = random
        self._now = now
        self._out: list[bytes] = []
        self._events: list[PppEvent] = []
        self.phase = Phase.DEAD
        self.lcp_handler = LcpHandler(
            self, is_server=self._is_server, auth_methods=auth_methods, mru=cfg.mru, random=random
        )
        self.lcp = self._new_fsm("LCP", self.lcp_handler, Protocol.LCP)
        self.ipcp: Fsm | None = None
        self.ipv6cp: Fsm | None = None
        self.ipv6cp_handler: Ipv6cpHandler | None = None
        self.is_network6_up = False
        #: whether this end runs IPV6CP; False: IPV6CP and IPv6 get Protocol-Reject
        self.ipv6_enabled = False
        self._auth: Auth | None = None
        self._auth_deadline: float | None = None
        self._down_reason: str | None = None
        self._finished = False
        self.auth_method: str | None = None
        self.username: str | None = None
        self.is_network_up = False
        self.dropped = 0
        self.identifications = 0
        self._eap_ignored = 0

    def _sender(self, protocol: int) -> Callable[[Packet], None]:
        def send(packet: Packet) -> None:
            self._out.append(encode_frame(protocol, packet.encode()))

        return send

    def _new_fsm(self, name: str, handler: FsmHandler, protocol: int) -> Fsm:
        fsm = Fsm(
            name,
            handler,
            self._sender(protocol),
            restart_interval=self._cfg.restart_interval,
            max_configure=self._cfg.max_configure,
            max_terminate=self._cfg.max_terminate,
            max_failure=self._cfg.max_failure,
        )
        fsm.peer_mru = self.send_limit
        return fsm

    # ------------------------------------------------------------------ driver API

    @property
    def peer_mru(self) -> int:
        return self.lcp_handler.peer_mru

    @property
    def send_limit(self) -> int:
        """The peer's MRU capped at what the carrier (one SSTP packet) can hold."""
        return min(self.lcp_handler.peer_mru, MAX_CARRIED_PACKET)

    def lower_up(self, now: float) -> None:
        self._now = now
        if self._finished or self.phase is not Phase.DEAD:
            return
        self.phase = Phase.ESTABLISH
        self.lcp.open(now)
        self.lcp.up(now)

    def lower_down(self, now: float) -> None:
        self._now = now
        if self._finished:
            return
        self.lcp.down(now)
        self._link_down(self._down_reason or "lower layer down")

    def close(self, reason: str, now: float) -> None:
        """Terminate the link with an LCP Terminate-Request carrying ``reason``."""
        self._now = now
        if self._finished:
            return
        if self._down_reason is None:
            self._down_reason = reason
        self.lcp.close(now, reason)
        if self.lcp.state in (State.INITIAL, State.CLOSED, State.STOPPED):
            self._link_down(self._down_reason)
        elif not self._finished:
            self.phase = Phase.TERMINATE

    def frames_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def pop_events(self) -> list[PppEvent]:
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        if self._finished:
            return None
        deadlines = [self.lcp.get_timer(), self._auth_deadline]
        if self.ipcp is not None:
            deadlines.append(self.ipcp.get_timer())
        if self.ipv6cp is not None:
            deadlines.append(self.ipv6cp.get_timer())
        if self._auth is not None:
            deadlines.append(self._auth.get_timer())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._finished:
            return
        deadline = self.lcp.get_timer()
        negotiating = self.lcp.state in (State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT)
        expiring = deadline is not None and now >= deadline and self.lcp.restart_count <= 0
        if negotiating and expiring:
            self._down_reason = self._down_reason or "LCP negotiation did not converge"
        self.lcp.handle_timer(now)
        if self.ipcp is not None:
            self.ipcp.handle_timer(now)
        if self.ipv6cp is not None:
            self.ipv6cp.handle_timer(now)
        if self._auth is not None:
            self._auth.handle_timer(now)
        if self._auth_deadline is not None and now >= self._auth_deadline:
            self._auth_deadline = None
            self.close("authentication timeout", now)

    def receive_frame(self, frame: bytes, now: float) -> None:
        """One PPP frame as it arrived (``FF 03`` and the protocol field in any form)."""
        try:
            protocol, offset = decode_frame(frame)
        except ParseError:
            self.receive_malformed(now)
            return
        self.receive_payload(protocol, bytes(frame[offset:]), now)

    def receive_malformed(self, now: float) -> None:
        """A frame whose protocol field could not be decoded: counted, nothing else."""
        self._now = now
        if not self._finished and self.phase is not Phase.DEAD:
            self.dropped += 1

    def receive_payload(self, protocol: int, payload: bytes, now: float) -> None:
        """One decoded frame: its ``protocol`` and what follows the protocol field."""
        self._now = now
        if self._finished or self.phase is Phase.DEAD:
            return
        if protocol == Protocol.LCP:
            self.lcp.receive(payload, now)
        elif protocol in (Protocol.PAP, Protocol.CHAP, Protocol.EAP):
            self._receive_auth(protocol, payload, now)
        elif protocol == Protocol.IPCP:
            if self.ipcp is not None and self.phase is Phase.NETWORK:
                self.ipcp.receive(payload, now)
            else:
                self.dropped += 1
        elif protocol == Protocol.IPV4:
            self.dropped += 1  # the data path's (see the module docstring), never the link's
        elif protocol == Protocol.IPV6CP and self.ipv6_enabled:
            if self.ipv6cp is not None and self.phase is Phase.NETWORK:
                self.ipv6cp.receive(payload, now)
            else:
                self.dropped += 1
        elif protocol == Protocol.IPV6 and self.ipv6_enabled:
            self.dropped += 1  # IPv6 on, but the session's data path is not open yet
        elif self.lcp.state == State.OPENED:
            # RFC 1661 §5.7: Rejected-Information is truncated to fit the peer's MRU.
            rejected = struct.pack("!H", protocol) + payload
            self.lcp.send_packet(Code.PROTOCOL_REJECT, rejected[: max(2, self.send_limit - 4)])
        else:
            self.dropped += 1
        if self.lcp_handler.fatal_reason is not None and not self._finished:
            reason, self.lcp_handler.fatal_reason = self.lcp_handler.fatal_reason, None
            self.close(reason, now)

    def _receive_auth(self, protocol: int, payload: bytes, now: float) -> None:
        auth = self._auth
        eap = protocol == Protocol.EAP
        if auth is None or AUTH_PROTOCOL[auth.method] != protocol:
            self.dropped += 1
            if eap:
                self._eap_notice("debug", f"EAP packet ignored in the {self.phase.value} phase")
            return
        if self.phase not in (Phase.AUTHENTICATE, Phase.NETWORK):
            self.dropped += 1
            return
        try:
            packet = Packet.decode(payload)
        except ParseError as exc:
            self.dropped += 1
            if eap:
                self._eap_notice("warning", f"EAP packet ignored: {exc}")
            return
        if eap and 4 + len(packet.data) < len(payload):
            self._eap_notice(
                "debug",
                f"EAP Length {4 + len(packet.data)} < {len(payload)} bytes in the PPP frame:"
                " the rest is padding (RFC 3748 §4.1)",
            )
        auth.receive(packet, now)

    def notice(self, level: str, message: str) -> None:
        self._events.append(Notice(level, message))

    def _eap_notice(self, level: str, message: str) -> None:
        self._eap_ignored += 1
        if self._eap_ignored <= EAP_NOTICES:
            self.notice(level, message)

    # ------------------------------------------------------------------ LCP callbacks

    def lcp_up(self) -> None:
        self.lcp.peer_mru = self.send_limit
        self._start_auth(self._now)

    def lcp_down(self) -> None:
        self._auth = None
        self._auth_deadline = None
        self.is_network_up = False
        if self.ipcp is not None:
            self.ipcp.down(self._now)
            self.ipcp = None
        if self.ipv6cp is not None:
            self.ipv6cp.down(self._now)  # Opened -> this_layer_down -> Network6Down
            self.ipv6cp = None
        self.is_network6_up = False
        if self.lcp.state is State.STOPPING and self._down_reason is None:
            self._down_reason = "terminated by peer"
        closing = self.lcp.state in (State.CLOSING, State.STOPPING)
        self.phase = Phase.TERMINATE if closing else Phase.ESTABLISH

    def lcp_finished(self) -> None:
        self._link_down(self._down_reason or "LCP finished")

    def lcp_protocol_rejected(self, protocol: int) -> None:
        if protocol == Protocol.IPCP and self.ipcp is not None:
            self.ipcp.protocol_rejected(self._now)
        elif protocol == Protocol.IPV6CP and self.ipv6cp is not None:
            self.ipv6cp.protocol_rejected(self._now)

    def lcp_identification(self, packet: Packet) -> None:
        """RFC 1570: informational only (Windows: "MSRASV5.20", "MSRAS-0-HOST", ...)."""
        self.identifications += 1
        if self.identifications <= IDENTIFICATION_LOGGED:
            text = packet.data[4:68].decode("ascii", "backslashreplace")
            self.notice("debug", f"LCP Identification {text!r} ignored")
        elif self.identifications == IDENTIFICATION_LOGGED + 1:
            self.notice("info", "more LCP Identification packets: ignoring them without logging")

    def _link_down(self, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.phase = Phase.DEAD
        self.is_network_up = False
        self.is_network6_up = False
        self._auth_deadline = None
        self._events.append(LinkDown(reason))

    # ------------------------------------------------------------------ next phase

    def _start_auth(self, now: float) -> None:
        """LCP is up: each role starts its authenticator (or the Network phase)."""
        raise NotImplementedError
