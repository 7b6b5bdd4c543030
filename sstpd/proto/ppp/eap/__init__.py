"""EAP (RFC 3748, PPP protocol 0xC227) with EAP-MS-CHAP-V2 (type 26), both ends.

What a Windows profile made in Settings, or with ``Add-VpnConnection -AuthenticationMethod
Eap``, authenticates with. The exchange (draft-kamath-pppext-eap-mschapv2-02, [MS-CHAP]
§2.2), Identifiers as in docs/protocol/eap-mschapv2.md §7::

    S: Request/Identity (i)                      C: Response/Identity (i) "DOMAIN\\user"
    S: Request/26 Challenge (i+1, ms_id)         C: Response/26 Response (i+1, ms_id)
    S: Request/26 Success "S=... M=OK" (i+2, the Response's ms_id)
                                                 C: Response/26 Success-Response (i+2): 03
    S: EAP-Success (i+2)                         -> authenticated, HLAK handed to SSTP
    wrong password: Request/26 Failure "E=691 R=r C=... V=3 M=..." (i+2, ms_id)
                                                 C: Response/26 Failure-Response: 04
    S: R=1: a new Challenge (the one in C=)      R=0: EAP-Failure, and LCP closes

The MS-CHAPv2 arithmetic is the plain PPP one: the server checks the Response through the
same ``verify`` callables (:mod:`sstpd.proto.ppp.auth.common`) and the HLAK (first 32 bytes
of the MSK = MasterReceiveKey || MasterSendKey || 32 zeros) is byte for byte the MS-CHAPv2
HLAK.

Both ends have the shape of the other authenticators in :mod:`sstpd.proto.ppp.auth`
(``start``/``receive``/``get_timer``/``handle_timer``, ``send`` and ``report`` callables).
Peer input never raises. The authenticator discards what RFC 3748 §4.1 says to discard
(a Response that does not answer the outstanding Request, unknown codes and types, EAP
after the exchange ended), tells the link why through ``notice`` (a log line), and gives up
after ``max_invalid`` such packets, which ends that session.

The modules: ``codec`` (codes, types, ``EapPacket``, ``MsChapV2Message``, the Challenge
and Response data, ``EAP_MSCHAPV2``), ``server`` (``EapServer``), ``peer`` (``EapPeer``).
This package re-exports every name they define.
"""

from __future__ import annotations

from sstpd.proto.ppp.eap.codec import (
    EAP_MSCHAPV2,
    EapCode,
    EapPacket,
    EapType,
    MsChapV2Message,
    MsOpCode,
    challenge_data,
    name_of,
    response_data,
    type_names,
)
from sstpd.proto.ppp.eap.peer import EapPeer
from sstpd.proto.ppp.eap.server import EapServer, Notice

__all__ = [
    "EAP_MSCHAPV2",
    "EapCode",
    "EapPacket",
    "EapPeer",
    "EapServer",
    "EapType",
    "MsChapV2Message",
    "MsOpCode",
    "Notice",
    "challenge_data",
    "name_of",
    "response_data",
    "type_names",
]
