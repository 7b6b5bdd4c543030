"""IPV6CP option handling (RFC 5072) for both ends of the link.

IPV6CP (protocol ``0x8057``) runs the same RFC 1661 automaton as IPCP; its only useful
option is the 8-byte Interface-Identifier (type 1, length 10). It carries no prefix and no
DNS: after both sides Ack, each end's link-local address is ``fe80::<its IID>`` and the
global prefix comes later in a Router Advertisement (docs/protocol/ipv6-dhcp.md §2).

Rules (RFC 5072 §4.1, as pppd ``ipv6cp_reqci`` and accel-ppp apply them), the same on
both ends:

* we send our own non-zero IID in our Configure-Request;
* the peer's IID is Nak'ed with a fresh non-zero one when it is zero, equal to ours, or
  already taken by another session (``in_use``, the server's duty: link-local addresses
  are per link, but a unique IID per session keeps logs and neighbour tables readable);
* both zero would mean nobody can pick: Reject the option (cannot happen with us, as our
  own IID is never zero, but a Nak'ed-to-zero peer is handled the same way);
* IPv6-Compression-Protocol (type 2) and anything unknown is rejected;
* a Nak of *our* IID suggests another one: we take it when it is non-zero and differs
  from the peer's, else draw a fresh one;
* a Reject of our IID means the peer will not negotiate it: we stop sending the option
  and keep using our IID locally.

Randomness is passed in (``random(n) -> n bytes``), as for the LCP magic number. A fresh
IID has the universal/local bit cleared (RFC 4291 appendix A: "local scope"), as pppd's
``eui64_magic`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Address

from sstpd.proto.ppp.frame import Option, Packet
from sstpd.proto.ppp.fsm import FsmEvent, State, Verdict

__all__ = [
    "IID_SIZE",
    "OPT_COMPRESSION",
    "OPT_INTERFACE_ID",
    "Ipv6cpHandler",
    "Ipv6cpListener",
    "link_local",
    "random_iid",
]

OPT_INTERFACE_ID = 1
OPT_COMPRESSION = 2
IID_SIZE = 8
ZERO_IID = bytes(IID_SIZE)
_LINK_LOCAL_PREFIX = bytes.fromhex("fe80000000000000")
_MAX_DRAWS = 64  # a working random source needs one draw; a broken one must not hang us


def link_local(iid: bytes) -> IPv6Address:
    """``fe80::<iid>``, the link-local address an interface identifier stands for."""
    if len(iid) != IID_SIZE:
        raise ValueError(f"an interface identifier has {IID_SIZE} bytes, not {len(iid)}")
    return IPv6Address(_LINK_LOCAL_PREFIX + iid)


def random_iid(random: Callable[[int], bytes], *avoid: bytes) -> bytes:
    """A non-zero random IID, U/L bit cleared, different from every IID in ``avoid``."""
    for _ in range(_MAX_DRAWS):
        iid = bytearray(random(IID_SIZE))
        iid[0] &= 0xFD
        value = bytes(iid)
        if value != ZERO_IID and value not in avoid:
            return value
    raise RuntimeError(f"no usable interface identifier in {_MAX_DRAWS} random draws")


class Ipv6cpListener:
    """What the link wants to hear from IPV6CP (as ``ipcp.IpcpListener`` for IPCP).
    Methods default to doing nothing."""

    def ipv6cp_up(self) -> None: ...
    def ipv6cp_down(self) -> None: ...
    def ipv6cp_finished(self) -> None: ...


class Ipv6cpHandler:
    """IPV6CP callbacks for one end of the link (the rules are symmetric); layer events
    go to ``listener``.

    ``local_iid`` fixes our identifier (None = draw one). ``in_use(iid)`` says whether
    another session already has that peer identifier; the client passes nothing.
    After this_layer_up, ``local_iid`` and ``peer_iid`` are the agreed identifiers
    (``peer_iid`` is None if the peer never sent one).
    """

    def __init__(
        self,
        *,
        random: Callable[[int], bytes],
        listener: Ipv6cpListener,
        local_iid: bytes | None = None,
        in_use: Callable[[bytes], bool] = lambda iid: False,
    ) -> None:
        if local_iid is not None and (len(local_iid) != IID_SIZE or local_iid == ZERO_IID):
            raise ValueError("local_iid must be 8 non-zero bytes")
        self._random = random
        self.listener = listener
        self._in_use = in_use
        self.local_iid = local_iid if local_iid is not None else random_iid(random)
        self.peer_iid: bytes | None = None
        self._send_iid = True

    @property
    def local_address(self) -> IPv6Address:
        return link_local(self.local_iid)

    @property
    def peer_address(self) -> IPv6Address | None:
        return None if self.peer_iid is None else link_local(self.peer_iid)

    # ------------------------------------------------------------------ our request

    def reset_request(self) -> None:
        self._send_iid = True

    def build_request(self) -> list[Option]:
        return [Option(OPT_INTERFACE_ID, self.local_iid)] if self._send_iid else []

    def request_acked(self, options: list[Option]) -> None:
        pass

    def request_naked(self, options: list[Option]) -> bool:
        for opt in options:
            if opt.type != OPT_INTERFACE_ID:
                continue  # a Nak may suggest options we did not ask for: ignore them
            if len(opt.data) != IID_SIZE:
                return False
            suggested = opt.data
            if suggested == ZERO_IID or suggested == self.peer_iid:
                suggested = random_iid(self._random, *self._taken())
            self.local_iid = suggested
        return True

    def request_rejected(self, options: list[Option]) -> bool:
        for opt in options:
            if opt.type == OPT_INTERFACE_ID:
                self._send_iid = False
        return True

    # ------------------------------------------------------------------ the peer's request

    def judge_request(self, options: list[Option]) -> Verdict:
        nak: list[Option] = []
        reject: list[Option] = []
        self.peer_iid = None
        for opt in options:
            if opt.type != OPT_INTERFACE_ID or len(opt.data) != IID_SIZE:
                reject.append(opt)
                continue
            iid = opt.data
            if iid == ZERO_IID and not self._send_iid:
                reject.append(opt)  # both zero: nobody can choose (RFC 5072 §4.1)
            elif iid == ZERO_IID or iid == self.local_iid or self._in_use(iid):
                nak.append(Option(OPT_INTERFACE_ID, self._fresh_peer_iid()))
            else:
                self.peer_iid = iid
        return Verdict(nak=tuple(nak), reject=tuple(reject))

    def _fresh_peer_iid(self) -> bytes:
        for _ in range(_MAX_DRAWS):
            iid = random_iid(self._random, self.local_iid)
            if not self._in_use(iid):
                return iid
        raise RuntimeError(f"no free interface identifier in {_MAX_DRAWS} random draws")

    def _taken(self) -> tuple[bytes, ...]:
        return (self.local_iid,) if self.peer_iid is None else (self.local_iid, self.peer_iid)

    # ------------------------------------------------------------------ no extension codes

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        return None  # codes beyond 7 are answered with Code-Reject

    def extension_reply(self, packet: Packet) -> Packet | None:
        return None

    # ------------------------------------------------------------------ layer events

    def this_layer_up(self) -> None:
        self.listener.ipv6cp_up()

    def this_layer_down(self) -> None:
        self.listener.ipv6cp_down()

    def this_layer_started(self) -> None:
        pass

    def this_layer_finished(self) -> None:
        self.listener.ipv6cp_finished()
