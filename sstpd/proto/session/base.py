"""``Session``: what server and client sessions share. The pump between the SSTP
connection and the PPP link, each PPP frame from the peer decoded once (IP to the data
path, the rest to the link), the crypto binding's gate on data frames, the driver API."""

from __future__ import annotations

from dataclasses import dataclass, field

from sstpd.errors import ParseError
from sstpd.proto.datapath import FAMILY_OF, PPP_HEADER, Counters, Family
from sstpd.proto.outcome import Outcome
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.frame import decode_frame
from sstpd.proto.ppp.link.events import AuthFailed, AuthSucceeded, Notice
from sstpd.proto.session.events import Event, IpReceived, SessionClosed, SessionOpened
from sstpd.proto.sstp import connection as sstp
from sstpd.proto.sstp.constants import HashProtocol

PPP_IPV4 = PPP_HEADER[Family.IPV4]
PPP_IPV6 = PPP_HEADER[Family.IPV6]


@dataclass
class SessionState:
    """What a session knows beyond its two layers (``Session._st``)."""

    events: list[Event] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    call_connected: bool = False
    network: ppp.NetworkUp | None = None
    hash_protocol: HashProtocol | None = None
    closed: bool = False
    close_reason: str = ""
    close_outcome: Outcome = Outcome.ABORTED  # goes with close_reason
    auth_failed: bool = False  # a login failed (the peer may have retried)
    username: str = ""
    auth_method: str = ""
    _opened_sent: bool = False


class Session:
    """What server and client sessions share: the pump between the SSTP connection and
    the PPP link, the data path's slow half, the driver API. Subclasses set ``_st``,
    ``_conn`` and ``_ppp``."""

    _st: SessionState
    _conn: sstp.SstpServerConnection | sstp.SstpClientConnection
    _ppp: ppp.PppServer | ppp.PppClient

    # -- properties the I/O layer reads on the hot path
    @property
    def is_open(self) -> bool:
        st = self._st
        return st.call_connected and st.network is not None and not st.closed

    @property
    def closed(self) -> bool:
        return self._st.closed

    @property
    def counters(self) -> Counters:
        return self._st.counters

    @property
    def http_done(self) -> bool:
        return self._conn.http_done

    @property
    def connection(self) -> sstp.SstpServerConnection | sstp.SstpClientConnection:
        return self._conn

    @property
    def link(self) -> ppp.PppServer | ppp.PppClient:
        return self._ppp

    # -- driver API
    def receive_data(self, data: bytes, now: float) -> None:
        self._conn.receive_data(data, now)
        self._pump(now)

    def receive_packet(self, is_control: bool, payload: bytes, now: float) -> None:
        self._conn.receive_packet(is_control, payload, now)
        self._pump(now)

    def touch(self, now: float) -> None:
        self._conn.touch(now)

    def send_ip(self, packet: bytes) -> None:
        """Queue one IP packet (slow path; the I/O layer batches: ``aio.datapath``).
        IPv6 (version nibble 6) goes as PPP protocol 0x0057 and needs IPV6CP open."""
        ipv6 = len(packet) > 0 and packet[0] >> 4 == 6
        if not self.is_open or (ipv6 and not self._ppp.is_network6_up):
            self._st.counters.dropped_not_open += 1
            return
        self._conn.send_ppp((PPP_IPV6 if ipv6 else PPP_IPV4) + packet)
        self._st.counters.tx_packets += 1
        self._st.counters.tx_bytes += len(packet)

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def pop_events(self) -> list[Event]:
        ev, self._st.events = self._st.events, []
        return ev

    def get_timer(self) -> float | None:
        if self._st.closed:
            return None
        t1 = self._conn.get_timer()
        t2 = self._ppp.get_timer()
        if t1 is None:
            return t2
        if t2 is None:
            return t1
        return min(t1, t2)

    def handle_timer(self, now: float) -> None:
        if self._st.closed:
            return
        t = self._conn.get_timer()
        if t is not None and t <= now:
            self._conn.handle_timer(now)
        t = self._ppp.get_timer()
        if t is not None and t <= now:
            self._ppp.handle_timer(now)
        self._pump(now)

    def disconnect(self, now: float, reason: str = "administrative disconnect") -> None:
        """Graceful teardown: LCP Terminate, then SSTP Call Disconnect."""
        if self._st.closed:
            return
        self._st.close_reason = reason
        self._conn.disconnect(now)
        self._pump(now)

    def abort_connection(self, reason: str, now: float = 0.0) -> None:
        """The transport is gone: no more bytes either way (MS-SSTP §3.1.7.2).

        The SSTP connection knows why it was tearing down (a Call Disconnect or an abort
        for a failed binding); that reason wins over ``reason``."""
        if self._st.closed:
            return
        if self._ppp.phase is ppp.Phase.TERMINATE and not self._st.close_reason:
            # PPP was terminated (LCP Terminate) and the peer closed the transport right after
            self._st.close_reason = "PPP terminated"
        self._conn.connection_lost()
        self._pump(now)
        self._ppp.lower_down(now)
        self._finish(reason)

    def check_ip_source(self, packet: bytes | memoryview) -> bool:
        """True if ``packet`` (IPv4) carries the peer's assigned source address."""
        raise NotImplementedError

    # -- internals
    def _finish(self, reason: str, outcome: Outcome = Outcome.ABORTED) -> None:
        st = self._st
        if st.closed:
            return
        st.closed = True
        if not st.close_reason:  # a reason set before (disconnect, PPP) wins, with its outcome
            st.close_reason, st.close_outcome = reason, outcome
        final = Outcome.AUTH_FAILED if st.auth_failed else st.close_outcome
        st.events.append(SessionClosed(st.close_reason, final))

    def _frame_from_peer(self, frame: bytes, now: float) -> None:
        st = self._st
        try:
            protocol, off = decode_frame(frame)
        except ParseError:
            self._ppp.receive_malformed(now)  # counted where malformed control frames are
            return
        if FAMILY_OF.get(protocol) is Family.IPV4:
            pkt = frame[off:]
            if not self.is_open:
                st.counters.dropped_not_open += 1
            elif not self.check_ip_source(pkt):
                st.counters.dropped_spoofed += 1
            elif pkt[9] == 17 and self._intercept_udp(bytes(pkt), now):
                pass  # DHCP, answered or dropped here, never handed on
            else:
                st.counters.rx_packets += 1
                st.counters.rx_bytes += len(pkt)
                st.events.append(IpReceived(bytes(pkt)))
            return
        if FAMILY_OF.get(protocol) is Family.IPV6 and self._ip6_from_peer(bytes(frame[off:]), now):
            return
        if protocol < 0x4000 and not st.call_connected:
            # MS-SSTP §3.3.1.1.1: only control frames before the crypto binding
            st.counters.dropped_not_open += 1
            return
        self._ppp.receive_payload(protocol, frame[off:], now)

    def _pump(self, now: float) -> None:
        """Move frames and events between the layers until nothing changes."""
        st = self._st
        conn, link = self._conn, self._ppp
        for _ in range(64):
            progressed = False
            for cev in conn.pop_events():
                progressed = True
                self._on_sstp_event(cev, now)
            for frame in link.frames_to_send():
                progressed = True
                if not conn.closed:
                    conn.send_ppp(frame)
            for pev in link.pop_events():
                progressed = True
                self._on_ppp_event(pev, now)
            if not progressed:
                break
        if self.is_open and not st._opened_sent and st.network is not None:
            st._opened_sent = True
            st.events.append(
                SessionOpened(st.network.local, st.network.peer, st.network.dns, st.hash_protocol)
            )

    def _on_sstp_event(self, ev: object, now: float) -> None:
        st = self._st
        if isinstance(ev, sstp.PppFrameReceived):
            self._frame_from_peer(ev.frame, now)
        elif isinstance(ev, sstp.CallConnected):
            st.call_connected = True
            st.hash_protocol = ev.hash_protocol
        elif isinstance(ev, sstp.ConnectionClosed):
            self._ppp.lower_down(now)
            self._finish(ev.reason, ev.outcome)
        else:
            self._on_other_sstp_event(ev, now)

    def _on_ppp_event(self, ev: object, now: float) -> None:
        st = self._st
        if isinstance(ev, AuthSucceeded):
            st.username, st.auth_method = ev.username, ev.method
            st.events.append(ev)
            self._on_authenticated(ev, now)
        elif isinstance(ev, AuthFailed):
            st.username, st.auth_method = ev.username, ev.method
            st.auth_failed = True
            st.events.append(ev)
        elif isinstance(ev, ppp.NetworkUp):
            st.network = ev
        elif isinstance(ev, Notice):
            st.events.append(ev)
        elif isinstance(ev, ppp.LinkDown):
            st.close_reason = st.close_reason or ev.reason
            if not self._conn.closed:
                self._conn.disconnect(now)

    def _on_other_sstp_event(self, ev: object, now: float) -> None:
        pass

    def _ip6_from_peer(self, packet: bytes, now: float) -> bool:
        """An IPv6 packet from the peer: True if the session's IPv6 data path took it;
        False hands the frame to the link (dropped there, or Protocol-Rejected when the
        link has no IPv6)."""
        return False

    def _intercept_udp(self, packet: bytes, now: float) -> bool:
        """A source-checked IPv4 UDP packet from the peer: True if consumed here."""
        return False

    def _on_authenticated(self, ev: AuthSucceeded, now: float) -> None:
        pass
