"""The RFC 1661 option-negotiation automaton, shared by LCP, IPCP and IPV6CP.

RFC 1661 §4 describes every PPP control protocol with one automaton of ten states and
sixteen events; the protocols differ only in their options. As in pppd (``fsm.c`` plus the
``fsm_callbacks`` of ``lcp.c``/``ipcp.c``) this package holds the automaton once and asks
an :class:`FsmHandler` for everything protocol specific: which options to request, how to
judge the peer's request, what to make of a Nak or Reject, and what to do when the layer
goes up, down, starts or finishes.

The modules: ``table`` (``State``, ``FsmEvent``, ``Action``, ``TRANSITIONS``: the RFC
1661 §4.1 table as data), ``handler`` (``FsmHandler``, ``Verdict``: what each protocol
supplies), ``automaton`` (``Fsm``: packets and timeouts to events, the actions, the
restart timer). This package re-exports every name they define.
"""

from __future__ import annotations

from sstpd.proto.ppp.fsm.automaton import Fsm
from sstpd.proto.ppp.fsm.handler import FsmHandler, Verdict
from sstpd.proto.ppp.fsm.table import TIMED_STATES, TRANSITIONS, Action, FsmEvent, State

__all__ = [
    "TIMED_STATES",
    "TRANSITIONS",
    "Action",
    "Fsm",
    "FsmEvent",
    "FsmHandler",
    "State",
    "Verdict",
]
