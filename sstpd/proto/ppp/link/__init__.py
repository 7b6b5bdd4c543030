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

The modules: ``events`` (``Phase``, the events, ``PppServerConfig``, ``PppClientConfig``),
``base`` (``LinkBase``: driver API, dispatch, LCP callbacks, ``MAX_CARRIED_PACKET``),
``phases`` (``Link``: the Authenticate and Network phases both ends share), ``server``
(``PppServer``), ``client`` (``PppClient``). This package re-exports every name they
define.
"""

from __future__ import annotations

from sstpd.proto.ppp.link.base import (
    AUTH_PROTOCOL,
    EAP_NOTICES,
    IDENTIFICATION_LOGGED,
    MAX_CARRIED_PACKET,
    Auth,
    LinkBase,
)
from sstpd.proto.ppp.link.client import PppClient
from sstpd.proto.ppp.link.events import (
    AuthFailed,
    AuthSucceeded,
    LinkDown,
    Network6Down,
    Network6Up,
    NetworkUp,
    Notice,
    Phase,
    PppClientConfig,
    PppEvent,
    PppServerConfig,
)
from sstpd.proto.ppp.link.phases import Link
from sstpd.proto.ppp.link.server import PppServer

__all__ = [
    "AUTH_PROTOCOL",
    "EAP_NOTICES",
    "IDENTIFICATION_LOGGED",
    "MAX_CARRIED_PACKET",
    "Auth",
    "AuthFailed",
    "AuthSucceeded",
    "Link",
    "LinkBase",
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
