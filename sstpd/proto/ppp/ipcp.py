"""IPCP option handling (RFC 1332, RFC 1877) for both ends of the link.

Server: hands the peer its assigned address by Nak'ing whatever it asked for (typically
0.0.0.0), Naks DNS/NBNS requests to the configured servers, rejects what is not configured
and rejects Van Jacobson compression; its own request carries only its tunnel address.

Client: asks for 0.0.0.0 (and DNS 0.0.0.0 when wanted), takes the values the server Naks
back, drops what the server rejects, and acknowledges the server's own address.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from sstpd.proto.ppp.frame import Option, Packet
from sstpd.proto.ppp.fsm import FsmEvent, State, Verdict

__all__ = ["IpcpClientHandler", "IpcpListener", "IpcpServerHandler"]

OPT_ADDRESSES = 1  # deprecated (RFC 1172)
OPT_COMPRESSION = 2
OPT_ADDRESS = 3
OPT_DNS1, OPT_NBNS1, OPT_DNS2, OPT_NBNS2 = 129, 130, 131, 132

ANY = IPv4Address(0)


class IpcpListener:
    """What the link wants to hear from IPCP (as ``lcp.LcpListener`` for LCP). Methods
    default to doing nothing."""

    def ipcp_up(self) -> None: ...
    def ipcp_down(self) -> None: ...
    def ipcp_finished(self) -> None: ...


class _IpcpBase:
    def __init__(self, listener: IpcpListener) -> None:
        self.listener = listener

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        return None  # IPCP has no codes beyond 7: Code-Reject

    def extension_reply(self, packet: Packet) -> Packet | None:
        return None

    def request_acked(self, options: list[Option]) -> None:
        pass

    def this_layer_up(self) -> None:
        self.listener.ipcp_up()

    def this_layer_down(self) -> None:
        self.listener.ipcp_down()

    def this_layer_started(self) -> None:
        pass

    def this_layer_finished(self) -> None:
        self.listener.ipcp_finished()


class IpcpServerHandler(_IpcpBase):
    def __init__(
        self,
        *,
        local: IPv4Address,
        peer: IPv4Address,
        dns: tuple[IPv4Address, ...],
        nbns: tuple[IPv4Address, ...],
        listener: IpcpListener,
    ) -> None:
        super().__init__(listener)
        self.local = local
        self.peer = peer
        self._servers = {
            OPT_DNS1: dns[0:1],
            OPT_DNS2: dns[1:2],
            OPT_NBNS1: nbns[0:1],
            OPT_NBNS2: nbns[1:2],
        }
        self._send_address = True
        self._hinted = False

    def reset_request(self) -> None:
        self._send_address = True

    def build_request(self) -> list[Option]:
        return [Option(OPT_ADDRESS, self.local.packed)] if self._send_address else []

    def request_naked(self, options: list[Option]) -> bool:
        return True  # our address is configured, not negotiable: ask again unchanged

    def request_rejected(self, options: list[Option]) -> bool:
        if any(o.type == OPT_ADDRESS for o in options):
            self._send_address = False
        return True

    def judge_request(self, options: list[Option]) -> Verdict:
        nak: list[Option] = []
        reject: list[Option] = []
        seen_address = False
        for opt in options:
            if opt.type == OPT_ADDRESS and len(opt.data) == 4:
                seen_address = True
                if opt.data != self.peer.packed:
                    nak.append(Option(OPT_ADDRESS, self.peer.packed))
            elif opt.type in self._servers and len(opt.data) == 4 and self._servers[opt.type]:
                wanted = self._servers[opt.type][0].packed
                if opt.data != wanted:
                    nak.append(Option(opt.type, wanted))
            else:
                reject.append(opt)
        if not seen_address and not reject and not self._hinted:
            # RFC 1661 §5.3: a Nak may append options we want the peer to include.
            self._hinted = True
            nak.append(Option(OPT_ADDRESS, self.peer.packed))
        return Verdict(nak=tuple(nak), reject=tuple(reject))


class IpcpClientHandler(_IpcpBase):
    def __init__(self, *, request_dns: bool, listener: IpcpListener) -> None:
        super().__init__(listener)
        self.request_dns = request_dns
        self.address: IPv4Address | None = ANY
        self.dns: dict[int, IPv4Address] = {}
        self.peer_address = ANY
        self.reset_request()

    def reset_request(self) -> None:
        self.address = ANY
        self.dns = {OPT_DNS1: ANY, OPT_DNS2: ANY} if self.request_dns else {}

    def build_request(self) -> list[Option]:
        options = [] if self.address is None else [Option(OPT_ADDRESS, self.address.packed)]
        options += [Option(kind, value.packed) for kind, value in sorted(self.dns.items())]
        return options

    def request_naked(self, options: list[Option]) -> bool:
        for opt in options:
            if len(opt.data) != 4:
                continue
            if opt.type == OPT_ADDRESS and self.address is not None:
                self.address = IPv4Address(opt.data)
            elif opt.type in self.dns:
                self.dns[opt.type] = IPv4Address(opt.data)
        return True

    def request_rejected(self, options: list[Option]) -> bool:
        for opt in options:
            if opt.type == OPT_ADDRESS:
                self.address = None
            self.dns.pop(opt.type, None)
        return True

    def judge_request(self, options: list[Option]) -> Verdict:
        reject = []
        for opt in options:
            if opt.type == OPT_ADDRESS and len(opt.data) == 4:
                self.peer_address = IPv4Address(opt.data)
            else:
                reject.append(opt)
        return Verdict(reject=tuple(reject))

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        return tuple(v for _, v in sorted(self.dns.items()) if v != ANY)
