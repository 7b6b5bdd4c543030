"""The server's Router Advertisements: what one session's RA says, and when it goes out.

Kept apart from the codecs (:mod:`.messages`) because this is policy and timing, not
layout: :func:`session_advertisement` picks the RA's content for a session's /64
(docs/protocol/ipv6-dhcp.md §2, accel-ppp's defaults), :func:`advertise` makes the whole
packet from the server's link-local address, and :class:`Advertiser` is the sans-I/O
schedule of unsolicited RAs and the rate limit on solicited ones (RFC 4861 §6.2.4-§6.2.6).
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from sstpd.proto.ipv6.nd.envelope import wrap
from sstpd.proto.ipv6.nd.messages import PrefixInformation, RouterAdvertisement, encode_ra
from sstpd.proto.ppp.ipv6cp import link_local

__all__ = ["Advertiser", "advertise", "session_advertisement"]


def session_advertisement(
    prefix: IPv6Network,
    *,
    mtu: int | None,
    dns: tuple[IPv6Address, ...] = (),
    interval: float = 600.0,
) -> RouterAdvertisement:
    """The RA for one session (docs/protocol/ipv6-dhcp.md §2, accel-ppp defaults): its /64 with L+A,
    M=O=0, router lifetime 3 x MaxRtrAdvInterval, RDNSS lifetime likewise (RFC 8106 §5.1
    "at least 3 * MaxRtrAdvInterval")."""
    lifetime = min(int(3 * interval), 9000)  # RFC 4861 §6.2.1: router lifetime <= 9000 s
    return RouterAdvertisement(
        router_lifetime=lifetime,
        prefixes=(PrefixInformation(prefix),),
        mtu=mtu,
        dns=dns,
        dns_lifetime=lifetime,
    )


def advertise(server_iid: bytes, dst: IPv6Address, ra: RouterAdvertisement) -> bytes:
    """The whole IPv6 packet of ``ra`` from ``fe80::<server_iid>`` to ``dst``."""
    return wrap(link_local(server_iid), dst, encode_ra(ra))


class Advertiser:
    """When to send RAs on one link (RFC 4861 §6.2.4-§6.2.6), sans-I/O.

    :meth:`start` when IPV6CP opens; then :meth:`get_timer`/:meth:`handle_timer` say when
    an unsolicited RA to ff02::1 is due: ``initial_count`` of them ``initial_interval``
    apart, then one every ``interval``. :meth:`solicited` answers whether a Router
    Solicitation may be answered now: at most one solicited RA per ``min_delay`` seconds
    (MIN_DELAY_BETWEEN_RAS); the rest of an RS flood is counted in ``rate_limited``.
    """

    def __init__(
        self,
        *,
        interval: float = 600.0,
        initial_count: int = 5,
        initial_interval: float = 3.0,
        min_delay: float = 3.0,
    ) -> None:
        self.interval = interval
        self.initial_count = initial_count
        self.initial_interval = initial_interval
        self.min_delay = min_delay
        self.sent = 0
        self.unsolicited = 0
        self.rate_limited = 0
        self._deadline: float | None = None
        self._last: float | None = None

    def start(self, now: float) -> None:
        """The link came up: the first RA is due at once."""
        self.unsolicited = 0
        self._last = None
        self._deadline = now

    def stop(self) -> None:
        self._deadline = None

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> bool:
        """True when an unsolicited RA must be sent now (then it counts as sent)."""
        if self._deadline is None or now < self._deadline:
            return False
        self._sent_at(now)
        self.unsolicited += 1
        initial = self.unsolicited < self.initial_count
        step = self.initial_interval if initial else self.interval
        self._deadline = now + step
        return True

    def solicited(self, now: float) -> bool:
        """True when the RS just received may be answered now."""
        if self._deadline is None:
            return False  # IPV6CP is not open: nothing to advertise
        if self._last is not None and now - self._last < self.min_delay:
            self.rate_limited += 1
            return False
        self._sent_at(now)
        return True

    def _sent_at(self, now: float) -> None:
        self.sent += 1
        self._last = now
