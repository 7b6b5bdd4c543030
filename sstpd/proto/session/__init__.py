"""One VPN session: the SSTP connection and the PPP link glued together, still sans-I/O.

Theory of operation
-------------------
The SSTP connection (``sstp.connection``) owns the byte stream: the HTTP upgrade, SSTP
framing, the SSTP state machine and its timers. PPP frames it receives are handed to the
PPP link (``ppp.link``), whose outgoing frames go back into SSTP data packets. The glue
enforces the two cross-layer rules of MS-SSTP:

* the HLAK comes from PPP authentication (MS-CHAPv2 master keys, or zeros for PAP) and is
  handed to SSTP, which verifies the client's Call Connected with it (§3.3.5.2.3, the
  Call Connected may arrive before or after authentication finished);
* before the crypto binding is verified only PPP *control* frames pass (protocol numbers
  >= 0x4000: LCP, authentication, NCPs); data frames are dropped (§3.3.1.1.1, note <17>).

IPv4 traffic flows once both the binding is verified and IPCP is up (``is_open``). Packets
from the client must carry its assigned source address; others are dropped and counted.
Each PPP frame from the peer is decoded once, here: an IP frame (any ACFC/PFC encoding,
``proto.datapath``) is the data path's and never reaches the PPP link; every other frame
goes to the link already decoded. The I/O layer has a fast path for full-form IPv4 data
packets that uses the same ``proto.datapath`` constants and the ``counters`` directly;
everything else goes through ``receive_packet``/``receive_data``.

Events for the I/O layer: the link's ``AuthSucceeded``, ``AuthFailed`` and ``Notice`` as
the link made them, and ``events``' ``SessionOpened``, ``IpReceived``, ``SessionClosed``,
``Session6Opened`` and ``Session6Closed``, and (server) ``Session4Opened`` when IPCP opens
on a session that had opened IPv6-only.

IPv6 (server): with ``assign_prefix`` the link runs IPV6CP too (``ppp.link``). Once it
is open and the binding verified, an ``ipv6.path.Ipv6Path`` sends the Router
Advertisement with the session's /64 and judges every IPv6 packet from the peer: inside
the /64 -> ``IpReceived`` (the I/O layer writes it to the same TUN; its fast path asks
``forwardable6``), link-local and Neighbor Discovery -> answered here, never forwarded,
anything else dropped and counted (``dropped_spoofed6``, ``dropped_invalid6``,
``dropped_nd_invalid``). ``Session6Opened``/``Session6Closed`` tell the I/O layer when to
route the /64 here. ``rx_*``/``tx_*`` count both families, ``rx6_*``/``tx6_*`` IPv6 alone.

DHCP over the tunnel (issue 12): the server answers a client's DHCPINFORM itself with the
split-tunnel routes, domain and DNS (``dhcp.answer_inform``); anything else sent to UDP
port 67 is dropped and counted in ``dropped_dhcp``, never handed on. The I/O layer's fast
path sends UDP packets to port 67 (68 on the client) here instead of to the TUN. The
client sends its DHCPINFORM with ``ClientSession.send_inform`` and gets ``RoutesReceived``.
With ``PppClientConfig.ipv6`` the client also runs IPV6CP, solicits a Router
Advertisement and reports the address it forms as ``Ipv6Configured``.

Both sides of a tunnel use this package: ``ServerSession`` and ``ClientSession``.

The modules: ``events`` (what the I/O layer is told), ``base`` (``Session``: the glue
both sides share, the driver API, the data path's slow half), ``server``
(``ServerSession``: IPv6 path, DHCPINFORM answers), ``client`` (``ClientSession``: Call
Connected, Router Solicitation, DHCPINFORM).
"""

from __future__ import annotations

from sstpd.proto.datapath import Counters
from sstpd.proto.ppp.link.events import AuthFailed, AuthSucceeded, Notice
from sstpd.proto.session.base import Session, SessionState
from sstpd.proto.session.client import ClientSession
from sstpd.proto.session.events import (
    Event,
    IpReceived,
    Ipv6Configured,
    RoutesReceived,
    Session4Opened,
    Session6Closed,
    Session6Opened,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.session.server import Ipv6Settings, ServerSession

__all__ = [
    "AuthFailed",
    "AuthSucceeded",
    "ClientSession",
    "Counters",
    "Event",
    "IpReceived",
    "Ipv6Configured",
    "Ipv6Settings",
    "Notice",
    "RoutesReceived",
    "ServerSession",
    "Session",
    "Session4Opened",
    "Session6Closed",
    "Session6Opened",
    "SessionClosed",
    "SessionOpened",
    "SessionState",
]
