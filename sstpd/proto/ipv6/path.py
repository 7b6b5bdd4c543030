"""IPv6 on one server session once IPV6CP is open: what the peer sends, and the RA timer.

The session (``sstpd.proto.session``) holds one :class:`Ipv6Path` from its ``Network6Up``
on. Every IPv6 packet the peer sends goes through :meth:`Ipv6Path.receive`, which
classifies it (:func:`sstpd.proto.ipv6.packet.classify`) against the session's /64 and
link-local address:

* ``FORWARD``: returned, for the I/O layer to write to the TUN (the fast path makes the
  same decision with :meth:`forwardable` without building an event);
* ``LOCAL``: link-local and Neighbor Discovery traffic, answered by the
  :class:`~sstpd.proto.ipv6.responder.LinkResponder` (RA for an RS, NA for an NS of the
  server's addresses) and never written to the TUN;
* ``SPOOFED`` (a source outside the /64 or another link-local address) and ``MALFORMED``
  are dropped and counted.

Outputs are whole IPv6 packets for the session to send as PPP protocol 0x0057. The
counters live in the session's ``Counters`` (names passed in), so ``describe()`` and
``/metrics`` need nothing new per field.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from typing import Protocol

from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import Verdict, classify
from sstpd.proto.ipv6.responder import LinkResponder
from sstpd.proto.ppp.ipv6cp import link_local

__all__ = ["Ipv6Counters", "Ipv6Path"]


class Ipv6Counters(Protocol):
    """The fields of the session's counters this module updates."""

    rx6_packets: int
    rx6_bytes: int
    dropped_spoofed6: int
    dropped_invalid6: int
    dropped_nd_invalid: int
    nd_rate_limited: int


class Ipv6Path:
    def __init__(
        self,
        *,
        server_iid: bytes,
        peer_iid: bytes | None,
        prefix: IPv6Network,
        counters: Ipv6Counters,
        server_address: IPv6Address | None = None,
        mtu: int | None = None,
        dns: tuple[IPv6Address, ...] = (),
        advertiser: nd.Advertiser | None = None,
    ) -> None:
        self.prefix = prefix
        #: the first 8 bytes of every address in the session's /64 (the fast path's key)
        self.prefix8 = prefix.network_address.packed[:8]
        ll = None if peer_iid is None else link_local(peer_iid)
        self.peer_link_local = ll
        self._peer_ll = None if ll is None else ll.packed
        self._counters = counters
        self.responder = LinkResponder(
            server_iid=server_iid,
            prefix=prefix,
            server_address=server_address,
            mtu=mtu,
            dns=dns,
            advertiser=advertiser,
        )

    def start(self, now: float) -> list[bytes]:
        """The first Router Advertisement, sent at once when IPV6CP opens."""
        return self.responder.start(now)

    def stop(self) -> None:
        self.responder.stop()

    def get_timer(self) -> float | None:
        return self.responder.get_timer()

    def handle_timer(self, now: float) -> list[bytes]:
        return self.responder.handle_timer(now)

    def forwardable(self, packet: bytes | memoryview) -> bool:
        """True if ``packet`` goes to the TUN as it is (the fast path's test)."""
        return classify(packet, self.prefix8, self._peer_ll) is Verdict.FORWARD

    def receive(self, packet: bytes, now: float) -> tuple[bytes | None, list[bytes]]:
        """``(packet for the TUN or None, packets to send back into the session)``."""
        c = self._counters
        verdict = classify(packet, self.prefix8, self._peer_ll)
        if verdict is Verdict.FORWARD:
            c.rx6_packets += 1
            c.rx6_bytes += len(packet)
            return packet, []
        if verdict is Verdict.LOCAL:
            replies = self.responder.receive(packet, now)
            c.dropped_nd_invalid = self.responder.counters.invalid
            c.nd_rate_limited = self.responder.counters.rate_limited
            return None, replies
        if verdict is Verdict.SPOOFED:
            c.dropped_spoofed6 += 1
        else:
            c.dropped_invalid6 += 1
        return None, []
