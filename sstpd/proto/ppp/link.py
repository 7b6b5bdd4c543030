"""PPP link: the phases of RFC 1661 §3 on top of LCP, authentication, IPCP and IPV6CP.

Dead -> Establish (LCP) -> Authenticate (PAP / MS-CHAPv2 / EAP) -> Network (IPCP, and
IPV6CP when the link does IPv6) ... ->
Terminate -> Dead. :class:`PppServer` is the authenticator and address giver,
:class:`PppClient` the peer; both are sans-I/O objects with the project's driver shape:

* inputs: ``lower_up(now)``, ``lower_down(now)``, ``receive_frame(frame, now)`` (or
  ``receive_payload(protocol, payload, now)`` when the caller has decoded the frame, as
  the session does), ``close(reason, now)``, ``handle_timer(now)``;
* outputs: ``frames_to_send()`` (``FF 03`` + protocol + packet), ``pop_events()``,
  ``get_timer()`` (absolute deadline or None). :class:`Notice` events are log lines for
  the I/O layer (this package does no logging): ignored peer input and why.

Rules from RFC 1661 the link enforces: authentication and NCP packets are silently
discarded before their phase (§3.5, §3.6); unknown protocols are answered with LCP
Protocol-Reject only while LCP is Opened (§5.7); the link is closed when every NCP it
runs has finished (as pppd does; RRAS: "if both NCPs fail the link is dropped"), so a
failed IPV6CP leaves IPv4 running and the other way round. :class:`LinkDown` is the one
terminal event; after it every input is ignored.

IP data frames are not the link's: the session's data path (``proto.datapath``) takes them
before they get here. An IPv4 frame given to the link anyway is counted in ``dropped``.

IPv6 (RFC 5072): a link without IPv6 (a server given no ``assign_prefix``) answers
IPV6CP and IPv6 frames with Protocol-Reject, exactly as before IPv6 existed. With it,
IPV6CP runs next to IPCP in the Network phase with :class:`Ipv6cpHandler` (the same
handler on both ends) and :class:`Network6Up` reports the agreed interface identifiers;
an IPv6 frame that reaches the link (the data path is not open for it) is counted in
``dropped``. The server takes the session's /64 when the Network phase starts; an
exhausted prefix pool makes it Protocol-Reject IPV6CP (IPv4 only for that link) rather
than open an NCP it cannot serve.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Network
from typing import Protocol as TypingProtocol

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.auth import (
    MSCHAPV2,
    PAP,
    AuthResult,
    MsChapV2Peer,
    MsChapV2Server,
    PapPeer,
    PapServer,
    Verdict,
    Verify,
    VerifyRequest,
    local_verifier,
)
from sstpd.proto.ppp.eap import EAP_MSCHAPV2, EapPeer, EapServer
from sstpd.proto.ppp.frame import Code, Packet, Protocol, decode_frame, encode_frame
from sstpd.proto.ppp.fsm import Fsm, FsmHandler, State
from sstpd.proto.ppp.ipcp import IpcpClientHandler, IpcpListener, IpcpServerHandler
from sstpd.proto.ppp.ipv6cp import Ipv6cpHandler, Ipv6cpListener
from sstpd.proto.ppp.lcp import LcpHandler, LcpListener

__all__ = [
    "AuthFailed",
    "AuthSucceeded",
    "LinkDown",
    "Network6Down",
    "Network6Up",
    "NetworkUp",
    "Notice",
    "Phase",
    "PppClient",
    "PppClientConfig",
    "PppEvent",
    "PppServer",
    "PppServerConfig",
]


@enum.unique
class Phase(enum.Enum):
    DEAD = "Dead"
    ESTABLISH = "Establish"
    AUTHENTICATE = "Authenticate"
    NETWORK = "Network"
    TERMINATE = "Terminate"


@dataclass(frozen=True)
class AuthSucceeded:
    username: str
    method: str
    hlak: bytes = field(repr=False)  # key material: never in a log line


@dataclass(frozen=True)
class AuthFailed:
    username: str
    method: str
    code: int
    reason: str


@dataclass(frozen=True)
class NetworkUp:
    local: IPv4Address
    peer: IPv4Address
    dns: tuple[IPv4Address, ...]


@dataclass(frozen=True)
class Network6Up:
    """IPV6CP opened: link-local addresses are ``fe80::<iid>`` on each end. ``peer_iid``
    is None when the peer never sent one; ``prefix`` is the session's /64 on the server
    (None on the client, which learns its prefix from the Router Advertisement)."""

    local_iid: bytes
    peer_iid: bytes | None
    prefix: IPv6Network | None


@dataclass(frozen=True)
class Network6Down:
    """IPV6CP left the Opened state (renegotiation, Terminate, LCP down)."""


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class Notice:
    """A line for the log: ``level`` is "debug", "info" or "warning"."""

    level: str
    message: str


PppEvent = AuthSucceeded | AuthFailed | NetworkUp | Network6Up | Network6Down | LinkDown | Notice

#: Identification packets logged one by one; beyond this, one line and then silence.
IDENTIFICATION_LOGGED = 8
#: EAP oddities the link itself logs (the authenticator has its own limit).
EAP_NOTICES = 4


@dataclass(frozen=True)
class PppServerConfig:
    local_address: IPv4Address
    auth_methods: tuple[str, ...] = (EAP_MSCHAPV2, MSCHAPV2, PAP)
    dns: tuple[IPv4Address, ...] = ()
    nbns: tuple[IPv4Address, ...] = ()
    mru: int = 1500
    auth_retries: int = 0
    restart_interval: float = 3.0
    max_configure: int = 10
    max_terminate: int = 2
    max_failure: int = 5
    auth_timeout: float = 30.0
    server_name: str = "sstpd"


@dataclass(frozen=True)
class PppClientConfig:
    username: str
    password: str | None = None
    nt_hash: bytes | None = None
    auth_methods: tuple[str, ...] = (EAP_MSCHAPV2, MSCHAPV2, PAP)
    request_dns: bool = True
    #: negotiate IPV6CP next to IPCP (a server without IPv6 Protocol-Rejects it: IPv4 only)
    ipv6: bool = False
    mru: int = 1500
    restart_interval: float = 3.0
    max_configure: int = 10
    max_terminate: int = 2
    max_failure: int = 5
    auth_timeout: float = 30.0


class _Auth(TypingProtocol):
    method: str

    def start(self, now: float) -> None: ...
    def receive(self, packet: Packet, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


_AUTH_PROTOCOL = {MSCHAPV2: Protocol.CHAP, PAP: Protocol.PAP, EAP_MSCHAPV2: Protocol.EAP}

#: The largest PPP packet (code to end of data) one SSTP data packet can carry: 4095 bytes
#: of SSTP packet minus its 4-byte header minus FF 03 and the 2-byte protocol. Whatever
#: MRU the peer announced, rejected or reflected packets are truncated to this (RFC 1661
#: §5.6/§5.7 allow truncation).
MAX_CARRIED_PACKET = 4095 - 4 - 4


class _Link(LcpListener, IpcpListener, Ipv6cpListener):
    """What server and client share: LCP, phases, dispatch, timers, output queues."""

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
        self._auth: _Auth | None = None
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
        if auth is None or _AUTH_PROTOCOL[auth.method] != protocol:
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

    # ------------------------------------------------------------------ phases

    def _start_auth(self, now: float) -> None:
        raise NotImplementedError

    def _begin_auth(self, auth: _Auth, now: float) -> None:
        self.phase = Phase.AUTHENTICATE
        self.auth_method = auth.method
        self._auth = auth
        self._auth_deadline = now + self._cfg.auth_timeout
        auth.start(now)

    def _auth_report(self, result: AuthResult) -> None:
        if result.success:
            self._auth_deadline = None
            self.username = result.username
            self._events.append(AuthSucceeded(result.username, result.method, result.hlak))
            self._start_network(self._now)
            return
        self._events.append(AuthFailed(result.username, result.method, result.code, result.reason))
        if not result.retry:
            self._down_reason = "authentication failed"
            self.close("authentication failed", self._now)

    def _start_network(self, now: float) -> None:
        raise NotImplementedError

    def _open_ipcp(self, handler: FsmHandler, now: float) -> None:
        self.phase = Phase.NETWORK
        self.ipcp = self._new_fsm("IPCP", handler, Protocol.IPCP)
        self.ipcp.open(now)
        self.ipcp.up(now)

    # ------------------------------------------------------------------ IPCP callbacks

    def ipcp_down(self) -> None:
        self.is_network_up = False

    def ipcp_finished(self) -> None:
        self._ncp_finished()

    @property
    def ipcp_given_up(self) -> bool:
        """IPCP ran and finished without opening (Protocol-Rejected by the peer, or its
        Configure-Requests unanswered or refused until the restart counter ran out)."""
        return self.ipcp is not None and self.ipcp.state in (State.CLOSED, State.STOPPED)

    def _ncp_finished(self) -> None:
        """One NCP finished: the link ends once none is negotiating or open any more."""
        if self.phase is not Phase.NETWORK:
            return
        finished = (State.INITIAL, State.STARTING, State.CLOSED, State.STOPPED)
        if all(f is None or f.state in finished for f in (self.ipcp, self.ipv6cp)):
            self.close("no network protocol running", self._now)

    # ------------------------------------------------------------------ IPV6CP

    def _open_ipv6cp(
        self,
        now: float,
        *,
        local_iid: bytes | None = None,
        in_use: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Run IPV6CP next to IPCP (either end calls this in ``_start_network``, after
        ``_open_ipcp``); ``in_use`` as for :class:`Ipv6cpHandler`."""
        handler = Ipv6cpHandler(
            random=self._random,
            listener=self,
            local_iid=local_iid,
            in_use=in_use or (lambda iid: False),
        )
        self.ipv6cp_handler = handler
        self.ipv6cp = self._new_fsm("IPV6CP", handler, Protocol.IPV6CP)
        self.ipv6cp.open(now)
        self.ipv6cp.up(now)

    def _network6_prefix(self) -> IPv6Network | None:
        return None

    # ------------------------------------------------------------------ IPV6CP callbacks

    def ipv6cp_up(self) -> None:
        handler = self.ipv6cp_handler
        assert handler is not None
        self.is_network6_up = True
        self._events.append(
            Network6Up(handler.local_iid, handler.peer_iid, self._network6_prefix())
        )

    def ipv6cp_down(self) -> None:
        if self.is_network6_up:
            self.is_network6_up = False
            self._events.append(Network6Down())

    def ipv6cp_finished(self) -> None:
        self._ncp_finished()


class PppServer(_Link):
    """The authenticator end: demands EAP/MS-CHAPv2/PAP, then assigns the peer an address."""

    _is_server = True

    def __init__(
        self,
        config: PppServerConfig,
        *,
        assign_address: Callable[[str], IPv4Address | None],
        random: Callable[[int], bytes],
        now: float,
        lookup: Callable[[str], bytes | None] | None = None,
        verify: Verify | None = None,
        assign_prefix: Callable[[str], IPv6Network | None] | None = None,
        iid_in_use: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``verify`` checks credentials (see ``auth.VerifyRequest``); ``lookup`` (user ->
        NT hash) is the shorthand for the local users file. ``assign_prefix`` (user -> a
        /64, None when the pool is exhausted) turns IPv6 on; ``iid_in_use`` says whether
        another session already has a peer interface identifier."""
        self.config = config
        if verify is None:
            if lookup is None:
                raise TypeError("PppServer needs verify= or lookup=")
            verify = local_verifier(lookup)
        self._verify = verify
        self._assign_address = assign_address
        self.peer_address: IPv4Address | None = None  # allocated at authentication
        self._address_owner: str | None = None
        self._assign_prefix = assign_prefix
        self._iid_in_use = iid_in_use
        #: the session's /64, held from the Network phase on; the owner releases it
        self.prefix: IPv6Network | None = None
        super().__init__(config, config.auth_methods, random, now)
        self.ipv6_enabled = assign_prefix is not None

    def _start_auth(self, now: float) -> None:
        method = self.lcp_handler.auth_method
        send = self._sender(_AUTH_PROTOCOL.get(method or PAP, Protocol.PAP))
        auth: _Auth
        if method == MSCHAPV2:
            auth = MsChapV2Server(
                send,
                self._auth_report,
                verify=self._verify,
                random=self._random,
                name=self.config.server_name,
                retries=self.config.auth_retries,
                restart_interval=self.config.restart_interval,
            )
        elif method == PAP:
            auth = PapServer(
                send, self._auth_report, verify=self._verify, retries=self.config.auth_retries
            )
        elif method == EAP_MSCHAPV2:
            auth = EapServer(
                send,
                self._auth_report,
                verify=self._verify,
                random=self._random,
                name=self.config.server_name,
                retries=self.config.auth_retries,
                restart_interval=self.config.restart_interval,
                notice=self.notice,
            )
        else:
            self.close("no authentication method configured", now)
            return
        self._begin_auth(auth, now)

    def complete_verification(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """A verification the ``verify`` callable answered later (None at first) is done.

        Stale answers (another attempt, a restarted or finished link) are ignored."""
        self._now = now
        auth = self._auth
        if self._finished or auth is None:
            return
        complete = getattr(auth, "complete", None)
        if complete is not None:
            complete(request, verdict, now)

    def _start_network(self, now: float) -> None:
        # Re-authentication (a new LCP negotiation of an open link) keeps the address the
        # link already holds: allocating again would leak the first one. Whoever owns the
        # link releases ``peer_address`` when it ends, whether IPCP ever opened or not.
        address = self.peer_address
        if address is not None and self.username != self._address_owner:
            self.close("re-authenticated as a different user", now)
            return
        if address is None:
            address = self._assign_address(self.username or "")
            if address is None:
                self.close("address pool exhausted", now)
                return
            self.peer_address = address
            self._address_owner = self.username
        handler = IpcpServerHandler(
            local=self.config.local_address,
            peer=address,
            dns=self.config.dns,
            nbns=self.config.nbns,
            listener=self,
        )
        self._open_ipcp(handler, now)
        self._start_ipv6(now)

    def _start_ipv6(self, now: float) -> None:
        if not self.ipv6_enabled or self._assign_prefix is None:
            return
        if self.prefix is None:  # re-authentication keeps the prefix, like the address
            self.prefix = self._assign_prefix(self.username or "")
            if self.prefix is None:
                self.ipv6_enabled = False  # IPV6CP now gets Protocol-Reject: IPv4 only
                self.notice("warning", "IPv6 prefix pool exhausted: IPV6CP refused, IPv4 only")
                return
        self._open_ipv6cp(now, in_use=self._iid_in_use)

    def _network6_prefix(self) -> IPv6Network | None:
        return self.prefix

    def ipcp_up(self) -> None:
        assert self.peer_address is not None
        self.is_network_up = True
        self._events.append(
            NetworkUp(self.config.local_address, self.peer_address, self.config.dns)
        )


class PppClient(_Link):
    """The peer end: authenticates itself, then takes the address the server gives."""

    _is_server = False

    def __init__(
        self, config: PppClientConfig, *, random: Callable[[int], bytes], now: float
    ) -> None:
        self.config = config
        nt_hash = config.nt_hash
        if nt_hash is None and config.password is not None:
            nt_hash = mschap.nt_password_hash(config.password)
        self._nt_hash = nt_hash
        usable = tuple(
            m
            for m in config.auth_methods
            if (m in (MSCHAPV2, EAP_MSCHAPV2) and nt_hash is not None)
            or (m == PAP and config.password is not None)
        )
        self._ipcp_handler: IpcpClientHandler | None = None
        self.peer_address: IPv4Address | None = None
        super().__init__(config, usable, random, now)
        self.username = config.username
        self.ipv6_enabled = config.ipv6

    def _start_auth(self, now: float) -> None:
        method = self.lcp_handler.peer_auth
        if method is None:  # the server does not ask us to authenticate
            self._start_network(now)
            return
        auth: _Auth
        send = self._sender(_AUTH_PROTOCOL[method])
        if method == MSCHAPV2:
            assert self._nt_hash is not None
            auth = MsChapV2Peer(
                send,
                self._auth_report,
                username=self.config.username,
                nt_hash=self._nt_hash,
                random=self._random,
            )
        elif method == EAP_MSCHAPV2:
            assert self._nt_hash is not None
            auth = EapPeer(
                send,
                self._auth_report,
                username=self.config.username,
                nt_hash=self._nt_hash,
                random=self._random,
            )
        else:
            assert self.config.password is not None
            auth = PapPeer(
                send,
                self._auth_report,
                username=self.config.username,
                password=self.config.password,
                restart_interval=self.config.restart_interval,
                max_transmits=self.config.max_configure,
            )
        self._begin_auth(auth, now)

    def retry_authentication(self, password: str, now: float) -> bool:
        """Answer a failure that allows a retry (MS-CHAPv2 ``R=1``, PAP Nak) anew."""
        self._now = now
        auth = self._auth
        if isinstance(auth, MsChapV2Peer | EapPeer):
            return auth.retry(mschap.nt_password_hash(password), now)
        if isinstance(auth, PapPeer):
            return auth.retry(password, now)
        return False

    def _start_network(self, now: float) -> None:
        handler = IpcpClientHandler(request_dns=self.config.request_dns, listener=self)
        self._ipcp_handler = handler
        self._open_ipcp(handler, now)
        if self.ipv6_enabled:  # the same handler as the server's, without in_use
            self._open_ipv6cp(now)

    def ipcp_up(self) -> None:
        handler = self._ipcp_handler
        assert handler is not None
        self.is_network_up = True
        self.peer_address = handler.peer_address
        local = handler.address or IPv4Address(0)
        self._events.append(NetworkUp(local, handler.peer_address, handler.dns_servers))

    @property
    def local_address(self) -> IPv4Address | None:
        handler = self._ipcp_handler
        return handler.address if handler is not None and self.is_network_up else None
