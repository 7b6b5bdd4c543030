"""The server's side of IPv6 on one PPP link: what to send, and what to answer.

A session holds one :class:`LinkResponder` once IPV6CP is open. It owns the link's RA
schedule and answers the packets :func:`sstpd.proto.ipv6.packet.classify` calls LOCAL:

* Router Solicitation -> a Router Advertisement unicast to the solicitor (to ff02::1 when
  it came from ``::``), at most one per ``min_delay`` (an RS flood is counted, not
  answered);
* Neighbor Solicitation for one of the server's own addresses -> a Neighbor Advertisement
  (R+S+O, no Target LLA option: PPP has no link-layer address); a DAD probe from ``::``
  is never answered, so the client's tentative address stays its own;
* everything else (MLD reports, DHCPv6 while the RA says O=0, NS for other targets,
  malformed or off-link ND) is dropped and counted.

``handle_timer`` returns the unsolicited RAs that are due. All outputs are whole IPv6
packets for the I/O layer to send into the session as PPP protocol 0x0057.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import HEADER_SIZE, ND_TYPES, NEXT_HEADER_ICMPV6
from sstpd.proto.ppp.ipv6cp import link_local

__all__ = ["LinkResponder", "NdCounters"]


@dataclass
class NdCounters:
    solicitations: int = 0
    advertisements: int = 0
    neighbor_advertisements: int = 0
    rate_limited: int = 0
    invalid: int = 0  # failed the RFC 4861 checks (hop limit, checksum, length, options)
    ignored: int = 0  # valid but nothing to answer (DAD, foreign target, MLD, DHCPv6, ...)


class LinkResponder:
    def __init__(
        self,
        *,
        server_iid: bytes,
        prefix: IPv6Network,
        server_address: IPv6Address | None = None,
        mtu: int | None = None,
        dns: tuple[IPv6Address, ...] = (),
        advertiser: nd.Advertiser | None = None,
    ) -> None:
        self.server_link_local = link_local(server_iid)
        self._iid = server_iid
        self.prefix = prefix
        self.counters = NdCounters()
        self._advertiser = advertiser or nd.Advertiser()
        self._ra = nd.session_advertisement(
            prefix, mtu=mtu, dns=dns, interval=self._advertiser.interval
        )
        self._own = {self.server_link_local}
        if server_address is not None:
            self._own.add(server_address)

    def start(self, now: float) -> list[bytes]:
        """IPV6CP opened: the first RA goes out at once."""
        self._advertiser.start(now)
        return self.handle_timer(now)

    def stop(self) -> None:
        self._advertiser.stop()

    def get_timer(self) -> float | None:
        return self._advertiser.get_timer()

    def handle_timer(self, now: float) -> list[bytes]:
        if not self._advertiser.handle_timer(now):
            return []
        self.counters.advertisements += 1
        return [nd.advertise(self._iid, nd.ALL_NODES, self._ra)]

    def receive(self, packet: bytes, now: float) -> list[bytes]:
        """Answer one packet the classifier called LOCAL; returns the packets to send."""
        if not _is_nd(packet):
            self.counters.ignored += 1  # MLD, DHCPv6, echo to fe80::, ...: not answered
            return []
        try:
            header, kind, message = nd.unwrap(packet)
            if kind == nd.TYPE_RS:
                nd.decode_rs(header, message)
                return self._solicited(header.src, now)
            if kind == nd.TYPE_NS:
                ns = nd.decode_ns(header, message)
                return self._neighbor(header.src, ns)
        except ParseError:
            self.counters.invalid += 1
            return []
        self.counters.ignored += 1  # RA, NA or Redirect from the client
        return []

    def _solicited(self, src: IPv6Address, now: float) -> list[bytes]:
        self.counters.solicitations += 1
        if not self._advertiser.solicited(now):
            self.counters.rate_limited = self._advertiser.rate_limited
            return []
        self.counters.advertisements += 1
        dst = nd.ALL_NODES if src.is_unspecified else src
        return [nd.advertise(self._iid, dst, self._ra)]

    def _neighbor(self, src: IPv6Address, ns: nd.NeighborSolicitation) -> list[bytes]:
        if src.is_unspecified or ns.target not in self._own:
            self.counters.ignored += 1  # DAD probe, or not one of our addresses
            return []
        self.counters.neighbor_advertisements += 1
        na = nd.NeighborAdvertisement(ns.target, router=True, solicited=True, override=True)
        return [nd.wrap(ns.target, src, nd.encode_na(na))]


def _is_nd(packet: bytes) -> bool:
    """ICMPv6 ND right after the fixed header, or too short to tell (then unwrap says why)."""
    if len(packet) <= HEADER_SIZE:
        return True
    return packet[6] == NEXT_HEADER_ICMPV6 and packet[HEADER_SIZE] in ND_TYPES
