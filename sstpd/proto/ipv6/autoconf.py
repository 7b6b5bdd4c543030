"""The client's side of IPv6 on one PPP link: ask for a Router Advertisement, form an address.

After IPV6CP opens, the link has link-local addresses only (``fe80::<IID>`` on each end,
docs/protocol/ipv6-dhcp.md §2). The global prefix comes in a Router Advertisement. A
:class:`RouterSolicitor` sends Router Solicitations (RFC 4861 §6.3.7: up to
MAX_RTR_SOLICITATIONS = 3, RTR_SOLICITATION_INTERVAL = 4 s apart; a server also sends RAs
unsolicited when IPV6CP opens, so usually the first one is already on its way) and reads
the RAs that come back. The first RA with an autonomous /64 Prefix Information option
gives the address ``prefix::<our IID>`` (RFC 4862 §5.5.3, with the interface identifier
IPV6CP agreed, as pppd + the kernel do on ppp0), the server's link-local router address,
the MTU and the RDNSS servers: an :class:`Ipv6Config` for the I/O layer to put on the TUN.

Only packets the I/O layer's classification sends here arrive: link-scoped destinations
and ND messages. Anything that fails RFC 4861's checks (hop limit 255, checksum, option
lengths, a link-local RA source) is counted in ``invalid`` and otherwise ignored, as is
anything that is not an RA (``ignored``); nothing a peer sends raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto.ipv6 import nd
from sstpd.proto.ppp.ipv6cp import IID_SIZE, link_local

__all__ = ["Ipv6Config", "RouterSolicitor", "address_in"]

MAX_RTR_SOLICITATIONS = 3
RTR_SOLICITATION_INTERVAL = 4.0


@dataclass(frozen=True)
class Ipv6Config:
    """What the Router Advertisement told the client."""

    address: IPv6Address  # prefix::<IID>, configured as /64
    prefix: IPv6Network
    link_local: IPv6Address  # ours, fe80::<IID>
    router: IPv6Address  # the server's link-local address (the RA's source)
    router_lifetime: int  # seconds; 0 = not a default router
    mtu: int | None
    dns: tuple[IPv6Address, ...]


def address_in(prefix: IPv6Network, iid: bytes) -> IPv6Address:
    """``prefix::iid`` for a /64 ``prefix``."""
    if prefix.prefixlen != 64 or len(iid) != IID_SIZE:
        raise ValueError("an interface identifier goes into a /64")
    return IPv6Address(prefix.network_address.packed[:8] + iid)


class RouterSolicitor:
    """Router Solicitations out, the configuration from the first usable RA in."""

    def __init__(
        self,
        local_iid: bytes,
        *,
        count: int = MAX_RTR_SOLICITATIONS,
        interval: float = RTR_SOLICITATION_INTERVAL,
    ) -> None:
        self.link_local = link_local(local_iid)
        self._iid = local_iid
        self._count = count
        self._interval = interval
        self._deadline: float | None = None
        self.sent = 0
        self.invalid = 0
        self.ignored = 0
        self.config: Ipv6Config | None = None

    def start(self, now: float) -> list[bytes]:
        """IPV6CP opened: the first RS now, the next ones from :meth:`handle_timer`."""
        self.sent = 0
        self.config = None
        self._deadline = now
        return self.handle_timer(now)

    def stop(self) -> None:
        self._deadline = None

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> list[bytes]:
        if self._deadline is None or now < self._deadline:
            return []
        self.sent += 1
        self._deadline = now + self._interval if self.sent < self._count else None
        rs = nd.encode_rs(nd.RouterSolicitation())  # no Source LLA option: PPP has none
        return [nd.wrap(self.link_local, nd.ALL_ROUTERS, rs)]

    def receive(self, packet: bytes) -> Ipv6Config | None:
        """A link-scoped/ND packet from the server: the new configuration when it is an RA
        that changes it, else None."""
        try:
            header, kind, message = nd.unwrap(packet)
            if kind != nd.TYPE_RA:
                self.ignored += 1
                return None
            ra = nd.decode_ra(header, message)
        except ParseError:
            self.invalid += 1
            return None
        for pio in ra.prefixes:
            usable = pio.prefix.prefixlen == 64 and not pio.prefix.is_link_local
            if pio.autonomous and usable and pio.valid_lifetime > 0:
                break
        else:
            self.ignored += 1  # nothing to form an address in (RFC 4862 §5.5.3 a-c)
            return None
        config = Ipv6Config(
            address=address_in(pio.prefix, self._iid),
            prefix=pio.prefix,
            link_local=self.link_local,
            router=header.src,
            router_lifetime=ra.router_lifetime,
            mtu=ra.mtu,
            dns=ra.dns,
        )
        self._deadline = None  # answered: no more solicitations
        if config == self.config:
            return None  # the periodic RA: nothing new
        self.config = config
        return config
