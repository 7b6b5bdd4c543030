"""What a session tells the I/O layer (``Session.pop_events``): the link's
``AuthSucceeded``, ``AuthFailed`` and ``Notice`` as the link made them, and these."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from sstpd.proto import dhcp
from sstpd.proto.ipv6.autoconf import Ipv6Config
from sstpd.proto.outcome import Outcome
from sstpd.proto.ppp.link.events import AuthFailed, AuthSucceeded, Notice
from sstpd.proto.sstp.constants import HashProtocol


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """Binding verified and IPCP up: IPv4 may flow. The I/O layer routes ``peer`` here.

    Server only: ``local`` and ``peer`` None is an IPv6-only session (IPV6CP open, IPCP
    Protocol-Rejected by the peer or given up), announced after its ``Session6Opened``."""

    local: IPv4Address | None
    peer: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    hash_protocol: HashProtocol | None


@dataclass(frozen=True, slots=True)
class Session4Opened:
    """Server only: IPCP opened on a session that had opened IPv6-only (its
    ``SessionOpened`` had no address). The I/O layer routes ``peer`` here from now on."""

    local: IPv4Address
    peer: IPv4Address
    dns: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class IpReceived:
    """An IPv4 or IPv6 packet that arrived through the slow path (already source-checked)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class Session6Opened:
    """Binding verified and IPV6CP up: the I/O layer routes ``prefix`` here."""

    prefix: IPv6Network
    peer_link_local: IPv6Address | None


@dataclass(frozen=True, slots=True)
class Session6Closed:
    """IPV6CP went down on an open session: stop routing ``prefix`` here."""

    prefix: IPv6Network


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Terminal. ``outcome`` is what the close means for a session that never opened (the
    I/O layer counts it): AUTH_FAILED once any login failed, else the winning reason's."""

    reason: str
    outcome: Outcome = Outcome.ABORTED


@dataclass(frozen=True, slots=True)
class RoutesReceived:
    """Client: the DHCPACK answering ``ClientSession.send_inform``."""

    info: dhcp.AckInfo


@dataclass(frozen=True, slots=True)
class Ipv6Configured:
    """Client: a Router Advertisement gave (or changed) the IPv6 address to configure."""

    config: Ipv6Config


Event = (
    AuthSucceeded
    | AuthFailed
    | SessionOpened
    | IpReceived
    | SessionClosed
    | Notice
    | RoutesReceived
    | Ipv6Configured
    | Session6Opened
    | Session6Closed
    | Session4Opened
)
