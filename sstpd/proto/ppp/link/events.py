"""What a PPP link tells the I/O layer (``pop_events``), its phases (``Phase``) and the
two ends' configurations (``PppServerConfig``, ``PppClientConfig``).

Plain data, separate from the link so that the session layer and the I/O layer can name
the events and build a configuration without reading the state machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Network

from sstpd.proto.ppp.auth.common import MSCHAPV2, PAP
from sstpd.proto.ppp.eap.codec import EAP_MSCHAPV2


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
