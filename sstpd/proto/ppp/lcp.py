"""LCP option handling (RFC 1661 §6) for the automaton in :mod:`sstpd.proto.ppp.fsm`.

We accept MRU, ACCM, Magic-Number, PFC and ACFC from the peer and reject everything else
(Callback 13, MRRU 17, Short Sequence 18, Endpoint Discriminator 19, Quality 4, ...):
multilink and callback make no sense inside one TLS connection. ACCM, PFC and ACFC cost
nothing to accept: SSTP carries no HDLC framing, and the frame decoder understands
compressed headers, while we always send uncompressed ones.

The authenticator (server role) asks for an Authentication-Protocol in the order of its
configured preference and follows a peer's Configure-Nak toward another configured method
(each is requested once; when none is left the reason names what the peer asked for).
LCP Identification packets (RFC 1570, sent by Windows right after LCP opens) are handed
to the listener for a debug log line and never answered or Code-Rejected.
The peer (client role) accepts an allowed method and Naks anything else with its own
preference.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from sstpd.proto.ppp.frame import Code, Option, Packet, Protocol
from sstpd.proto.ppp.fsm import FsmEvent, State, Verdict

__all__ = ["AUTH_OPTION_DATA", "LcpHandler", "LcpListener", "auth_method_of", "auth_name"]

OPT_MRU = 1
OPT_ACCM = 2
OPT_AUTH = 3
OPT_MAGIC = 5
OPT_PFC = 7
OPT_ACFC = 8

MIN_MRU = 128  # pppd's MINMRU; below this we Nak
DEFAULT_MRU = 1500  # RFC 1661 §6.1

#: Authentication-Protocol option data per method name.
AUTH_OPTION_DATA = {
    "eap-mschapv2": b"\xc2\x27",
    "mschapv2": b"\xc2\x23\x81",
    "pap": b"\xc0\x23",
}
#: What a peer may ask for, named for the log (RFC 1994 §3, RFC 2433, RFC 2759, RFC 3748).
_AUTH_NAMES = {
    b"\xc2\x27": "EAP",
    b"\xc2\x23\x81": "MS-CHAPv2",
    b"\xc2\x23\x80": "MS-CHAP",
    b"\xc2\x23\x05": "CHAP-MD5",
    b"\xc0\x23": "PAP",
}
IDENTIFICATION = 12  # RFC 1570 Identification and Time-Remaining: logged, never answered
TIME_REMAINING = 13


def auth_name(data: bytes) -> str:
    """The Authentication-Protocol option data as a name for the log."""
    return _AUTH_NAMES.get(data) or data.hex()


def auth_method_of(data: bytes) -> str | None:
    for name, value in AUTH_OPTION_DATA.items():
        if data == value:
            return name
    return None


class LcpListener:
    """What the link wants to hear from LCP. Methods default to doing nothing."""

    def lcp_up(self) -> None: ...
    def lcp_down(self) -> None: ...
    def lcp_finished(self) -> None: ...
    def lcp_protocol_rejected(self, protocol: int) -> None: ...
    def lcp_identification(self, packet: Packet) -> None: ...


class LcpHandler:
    """LCP callbacks for one side of the link (``is_server`` = authenticator)."""

    def __init__(
        self,
        listener: LcpListener,
        *,
        is_server: bool,
        auth_methods: tuple[str, ...],
        mru: int,
        random: Callable[[int], bytes],
    ) -> None:
        self.listener = listener
        self.is_server = is_server
        self.auth_methods = tuple(m for m in auth_methods if m in AUTH_OPTION_DATA)
        self.mru = mru
        self._random = random
        self.fatal_reason: str | None = None  # set when negotiation cannot succeed
        # what we ask for
        self.want_mru = mru != DEFAULT_MRU
        self.want_magic = True
        self.magic = 0
        self.auth_method: str | None = None  # server: the method we request
        self._tried: set[str] = set()
        self._peer_asked: list[str] = []  # what the peer Naked our auth request toward
        self._requested: list[Option] = []
        # what the peer asked for (valid after this_layer_up)
        self.peer_mru = DEFAULT_MRU
        self.peer_magic = 0
        self.peer_auth: str | None = None  # client: the method the server asked for
        self.magic_acked = False
        self.echo_replies = 0
        self.reset_request()

    def _new_magic(self) -> int:
        while True:
            magic = int.from_bytes(self._random(4), "big")
            if magic not in (0, self.peer_magic):
                return magic

    # ------------------------------------------------------------------ our request

    def reset_request(self) -> None:
        self.want_mru = self.mru != DEFAULT_MRU
        self.want_magic = True
        self.magic = self._new_magic()
        self.magic_acked = False
        if self.is_server:
            self.auth_method = self.auth_methods[0] if self.auth_methods else None
            self._tried = {self.auth_method} if self.auth_method else set()
            self._peer_asked = []

    def build_request(self) -> list[Option]:
        options = []
        if self.want_mru:
            options.append(Option(OPT_MRU, struct.pack("!H", self.mru)))
        if self.is_server and self.auth_method is not None:
            options.append(Option(OPT_AUTH, AUTH_OPTION_DATA[self.auth_method]))
        if self.want_magic:
            options.append(Option(OPT_MAGIC, struct.pack("!I", self.magic)))
        self._requested = options
        return options

    def request_acked(self, options: list[Option]) -> None:
        self.magic_acked = any(o.type == OPT_MAGIC for o in options)

    def request_naked(self, options: list[Option]) -> bool:
        for opt in options:
            if opt.type == OPT_MRU:
                if len(opt.data) != 2:
                    return False
                value = struct.unpack("!H", opt.data)[0]
                self.mru, self.want_mru = (value, True) if value >= MIN_MRU else (self.mru, False)
            elif opt.type == OPT_MAGIC:
                if len(opt.data) != 4:
                    return False
                self.magic = self._new_magic()
            elif opt.type == OPT_AUTH and self.is_server:
                self._follow_auth_nak(opt.data)
        # no point in another request when the link is about to be closed
        return self.fatal_reason is None

    def _follow_auth_nak(self, data: bytes) -> None:
        """Switch to the configured method the peer suggests, else to the next untried one
        (RFC 1661 §5.3); each method is requested once, so a peer cannot make us loop."""
        name = auth_name(data)
        if name not in self._peer_asked:
            self._peer_asked.append(name)
        suggested = auth_method_of(data)
        untried = [m for m in self.auth_methods if m not in self._tried]
        if not untried:
            self.fatal_reason = (
                "peer refused every configured authentication method: it asked for "
                f"{', '.join(self._peer_asked)}; configured: {', '.join(self.auth_methods)}"
            )
            return
        self.auth_method = suggested if suggested in untried else untried[0]
        self._tried.add(self.auth_method)

    def request_rejected(self, options: list[Option]) -> bool:
        if any(opt not in self._requested for opt in options):
            return False  # a Reject must quote our options verbatim (RFC 1661 §5.4)
        for opt in options:
            if opt.type == OPT_MRU:
                self.want_mru = False
            elif opt.type == OPT_MAGIC:
                self.want_magic = False
            elif opt.type == OPT_AUTH:
                self.fatal_reason = (
                    "peer refused to authenticate (Configure-Reject of the "
                    f"Authentication-Protocol option); configured: {', '.join(self.auth_methods)}"
                )
        return self.fatal_reason is None

    # ------------------------------------------------------------------ the peer's request

    def judge_request(self, options: list[Option]) -> Verdict:
        nak: list[Option] = []
        reject: list[Option] = []
        self.peer_mru, self.peer_magic, self.peer_auth = DEFAULT_MRU, 0, None
        for opt in options:
            kind, data = opt.type, opt.data
            if kind == OPT_MRU and len(data) == 2:
                value = struct.unpack("!H", data)[0]
                if value < MIN_MRU:
                    nak.append(Option(OPT_MRU, struct.pack("!H", MIN_MRU)))
                self.peer_mru = value
            elif (kind == OPT_ACCM and len(data) == 4) or (
                kind in (OPT_PFC, OPT_ACFC) and not data
            ):
                pass
            elif kind == OPT_MAGIC and len(data) == 4:
                value = struct.unpack("!I", data)[0]
                if value == 0 or (self.want_magic and value == self.magic):
                    # zero is illegal; equal to ours means a looped-back link (RFC 1661 §6.4)
                    nak.append(Option(OPT_MAGIC, struct.pack("!I", self._new_magic())))
                self.peer_magic = value
            elif kind == OPT_AUTH and not self.is_server and len(data) >= 2:
                method = auth_method_of(data)
                if method in self.auth_methods:
                    self.peer_auth = method
                elif self.auth_methods:
                    nak.append(Option(OPT_AUTH, AUTH_OPTION_DATA[self.auth_methods[0]]))
                else:
                    reject.append(opt)
            else:
                reject.append(opt)
        return Verdict(nak=tuple(nak), reject=tuple(reject))

    # ------------------------------------------------------------------ extension codes

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        code = packet.code
        if code == Code.PROTOCOL_REJECT:
            if len(packet.data) < 2:
                return FsmEvent.RXR  # malformed: nothing to act on
            protocol = struct.unpack_from("!H", packet.data)[0]
            if protocol == Protocol.LCP:
                return FsmEvent.RXJ_MINUS
            if state == State.OPENED:
                self.listener.lcp_protocol_rejected(protocol)
            return FsmEvent.RXJ_PLUS
        if code == Code.ECHO_REPLY:
            self.echo_replies += 1
            return FsmEvent.RXR
        if code == IDENTIFICATION:
            self.listener.lcp_identification(packet)
            return FsmEvent.RXR  # RFC 1570 §2.1: never answered; in Opened, ser sends nothing
        if code in (Code.ECHO_REQUEST, Code.DISCARD_REQUEST, TIME_REMAINING):
            return FsmEvent.RXR
        return None

    def extension_reply(self, packet: Packet) -> Packet | None:
        if packet.code != Code.ECHO_REQUEST or len(packet.data) < 4:
            return None
        magic = self.magic if self.magic_acked else 0
        if magic and packet.data[:4] == struct.pack("!I", magic):
            return None  # our own request looped back
        return Packet(
            Code.ECHO_REPLY, packet.identifier, struct.pack("!I", magic) + packet.data[4:]
        )

    # ------------------------------------------------------------------ layer events

    def this_layer_up(self) -> None:
        self.listener.lcp_up()

    def this_layer_down(self) -> None:
        self.listener.lcp_down()

    def this_layer_started(self) -> None:
        pass

    def this_layer_finished(self) -> None:
        self.listener.lcp_finished()
