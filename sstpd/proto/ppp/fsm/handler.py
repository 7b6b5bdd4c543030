"""What a control protocol (LCP, IPCP, IPV6CP) gives the automaton: :class:`FsmHandler`.

Kept apart from the engine (:mod:`.automaton`) because this is the contract the
per-protocol modules implement and the link holds them by: the shape of pppd's
``fsm_callbacks``. A handler says which options to request, judges the peer's request
(:class:`Verdict`), adjusts to a Nak or Reject, classifies the codes beyond Code-Reject
(LCP Echo, Discard, Protocol-Reject) and hears when the layer goes up, down, starts or
finishes. Callbacks may call into *other* automata but not back into the one calling them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sstpd.proto.ppp.frame import Option, Packet
from sstpd.proto.ppp.fsm.table import FsmEvent, State

__all__ = ["FsmHandler", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The handler's judgement of a peer Configure-Request (pppd ``reqci``)."""

    nak: tuple[Option, ...] = ()
    reject: tuple[Option, ...] = ()


class FsmHandler(Protocol):
    """Protocol-specific callbacks, in the shape of pppd's ``fsm_callbacks``."""

    def reset_request(self) -> None:
        """Negotiation (re)starts from Closed/Stopped/Starting: reset our wanted options."""

    def build_request(self) -> list[Option]:
        """Options for our next Configure-Request (``addci``)."""
        ...

    def judge_request(self, options: list[Option]) -> Verdict:
        """Judge the peer's Configure-Request; empty verdict = acknowledge all (``reqci``)."""
        ...

    def request_acked(self, options: list[Option]) -> None:
        """Our request was acknowledged (``ackci``)."""

    def request_naked(self, options: list[Option]) -> bool:
        """Adjust our wants after a Configure-Nak; False = malformed, drop it."""
        ...

    def request_rejected(self, options: list[Option]) -> bool:
        """Stop asking for the rejected options; False = malformed, drop it."""
        ...

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        """Classify a code beyond Code-Reject: RXR, RXJ+, RXJ-, or None = unknown (RUC)."""
        ...

    def extension_reply(self, packet: Packet) -> Packet | None:
        """``ser``: the answer to an RXR packet in Opened (Echo-Reply), if any."""
        ...

    def this_layer_up(self) -> None: ...

    def this_layer_down(self) -> None: ...

    def this_layer_started(self) -> None: ...

    def this_layer_finished(self) -> None: ...
