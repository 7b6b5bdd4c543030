"""The worker link's own requests and answers (``server.workers``): one definition.

The supervisor asks its workers the public control commands (their answers are the
records of ``sstpd.records``) and two that only it sends (``sstpd.aio.workers_link``'s
``LINK_COMMANDS``):

* ``dae``: end the sessions a RADIUS Disconnect-Request names (``sstpd.aio.dae``); the
  request is a ``DaeRequest`` (the criteria as text), the answer a ``DaeRecord``
  (how many sessions the worker ended);
* ``acme-challenge``: install or remove a TLS-ALPN-01 answer in the worker's TLS router;
  the request is a ``ChallengeRequest`` (the name, and the challenge certificate and key
  as PEM to install), the answer a ``ChallengeRecord`` (the names the router now answers
  for, so the supervisor sees that the worker took it);
* ``traffic``: each open session's traffic counters, for the Stops the supervisor sends
  if the worker dies (``sstpd.aio.refresh``); the answer is ``{"traffic": [[id,
  rx_bytes, tx_bytes, rx_packets, tx_packets], ...]}`` (``traffic_to_json``, read by
  ``traffic_from_json`` into ``SessionTraffic`` rows): five integers per session instead
  of a ``sessions`` row's 24 fields, since the supervisor asks every 10 s.

A request's JSON is ``{"cmd": ..., **to_json()}`` (``to_request``); an answer is
``{"ok": true, **to_json()}``, as for the public records. Reading follows
``sstpd.records``: unknown keys are ignored (``cmd``, ``ok``), a missing key without a
default or a value of the wrong type raises ``RecordError`` naming it; these records also
check their values (an address that does not parse, a negative count, a name that is not
a DNS name) and a ``ChallengeRequest``'s errors never quote the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Network
from typing import ClassVar, NamedTuple, Self

from sstpd.proto.aaa import INTERFACE_ID_LEN, DisconnectCriteria
from sstpd.records_base import Json, RecordError, _Record

__all__ = [
    "MAX_NAME",
    "ChallengeRecord",
    "ChallengeRequest",
    "DaeRecord",
    "DaeRequest",
    "SessionTraffic",
    "traffic_from_json",
    "traffic_to_json",
]

MAX_NAME = 253  # characters of a DNS name


@dataclass(frozen=True, kw_only=True)
class DaeRequest(_Record):
    """The ``dae`` request: which sessions a Disconnect-Request names (``aaa.DisconnectCriteria``
    as text; None: not given). At least one is given; a session must match every one."""

    CMD: ClassVar[str] = "dae"
    user: str | None = None
    session_id: str | None = None  # Acct-Session-Id
    framed_ip: str | None = None  # an IPv4 address
    framed_ipv6_prefix: str | None = None  # a network (any length: the worker matches /64s)
    framed_interface_id: str | None = None  # hex of the INTERFACE_ID_LEN bytes

    @classmethod
    def of(cls, c: DisconnectCriteria) -> Self:
        prefix6, iid = c.framed_ipv6_prefix, c.framed_interface_id
        return cls(
            user=c.user,
            session_id=c.session_id,
            framed_ip=str(c.framed_ip) if c.framed_ip is not None else None,
            framed_ipv6_prefix=str(prefix6) if prefix6 is not None else None,
            framed_interface_id=iid.hex() if iid is not None else None,
        )

    def criteria(self) -> DisconnectCriteria:
        """The criteria (the addresses parsed); RecordError when one does not parse."""
        try:
            ip = IPv4Address(self.framed_ip) if self.framed_ip is not None else None
        except ValueError:
            raise RecordError(f"DaeRequest.framed_ip: {self.framed_ip!r:.60} is not IPv4") from None
        try:
            prefix = self.framed_ipv6_prefix
            ip6 = IPv6Network(prefix) if prefix is not None else None
        except ValueError:  # host bits set, a bad length, not an address
            raise RecordError(
                f"DaeRequest.framed_ipv6_prefix: {self.framed_ipv6_prefix!r:.60} is not an "
                "IPv6 network"
            ) from None
        iid = self.framed_interface_id
        try:
            iid_bytes = bytes.fromhex(iid) if iid is not None else None
        except ValueError:
            iid_bytes = b""
        if iid_bytes is not None and len(iid_bytes) != INTERFACE_ID_LEN:
            raise RecordError(
                f"DaeRequest.framed_interface_id: {iid!r:.60} is not {INTERFACE_ID_LEN} bytes "
                "of hex"
            )
        return DisconnectCriteria(self.user, self.session_id, ip, ip6, iid_bytes)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        rec = cls._read(obj)
        if rec.criteria().empty:
            raise RecordError("DaeRequest: dae names no session")
        return rec

    def to_request(self) -> Json:
        return {"cmd": self.CMD, **self.to_json()}


@dataclass(frozen=True, kw_only=True)
class DaeRecord(_Record):
    """The ``dae`` answer: how many open sessions the worker ended (0: none matched)."""

    ended: int

    @classmethod
    def from_json(cls, obj: object) -> Self:
        rec = cls._read(obj)
        if rec.ended < 0:
            raise RecordError(f"DaeRecord.ended: {rec.ended} is negative")
        return rec


@dataclass(frozen=True, kw_only=True)
class ChallengeRequest(_Record):
    """The ``acme-challenge`` request: install the TLS-ALPN-01 answer for ``name`` (its
    challenge certificate and key, PEM) in the worker's TLS router, or remove it (neither).
    Well under ``sstpd.control.MAX_REQUEST``: an EC P-256 key and a certificate for one
    name."""

    CMD: ClassVar[str] = "acme-challenge"
    name: str  # a DNS name, ASCII, at most MAX_NAME characters
    cert: str | None = None  # PEM certificate
    key: str | None = field(default=None, repr=False)  # PEM private key: never shown

    @classmethod
    def of(cls, name: str, cert_pem: bytes | None = None, key_pem: bytes | None = None) -> Self:
        """From the PEM bytes; only both install, otherwise it is a removal."""
        if cert_pem is None or key_pem is None:
            return cls(name=name)
        return cls(name=name, cert=cert_pem.decode("ascii"), key=key_pem.decode("ascii"))

    @property
    def pems(self) -> tuple[bytes, bytes] | None:
        """``(cert_pem, key_pem)`` to install; None: a removal."""
        if self.cert is None or self.key is None:
            return None
        return self.cert.encode("ascii"), self.key.encode("ascii")

    def to_json(self) -> Json:
        # a removal carries the name only
        return {k: v for k, v in self._write().items() if v is not None}

    def to_request(self) -> Json:
        return {"cmd": self.CMD, **self.to_json()}

    @classmethod
    def from_json(cls, obj: object) -> Self:
        # the types are checked here, before _read, whose message would quote the value
        if not isinstance(obj, Mapping):
            raise RecordError("acme-challenge: not a JSON object")
        name = obj.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isascii():
            raise RecordError('acme-challenge: "name" must be a DNS name')
        cert, key = obj.get("cert"), obj.get("key")
        if cert is None and key is None:
            return cls._read(obj)
        for what, text, marker in (("cert", cert, "CERTIFICATE"), ("key", key, "PRIVATE KEY")):
            pem = isinstance(text, str) and text.isascii() and f"-----BEGIN {marker}" in text
            if not pem:
                raise RecordError(f'acme-challenge: "{what}" must be a PEM {marker.lower()}')
        return cls._read(obj)


@dataclass(frozen=True, kw_only=True)
class ChallengeRecord(_Record):
    """The ``acme-challenge`` answer: the names (lower case, sorted) the worker's router
    answers TLS-ALPN-01 validations for, after the request."""

    pending: tuple[str, ...]


class SessionTraffic(NamedTuple):
    """One row of the ``traffic`` answer: a session's counters as the worker has them."""

    id: int
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


def traffic_to_json(rows: Iterable[SessionTraffic]) -> Json:
    """The ``traffic`` answer without ``ok``."""
    return {"traffic": [list(r) for r in rows]}


def traffic_from_json(answer: object) -> list[SessionTraffic]:
    """The rows of a ``traffic`` answer; ``RecordError`` names the first bad one."""
    rows = answer.get("traffic") if isinstance(answer, Mapping) else None
    if not isinstance(rows, list):
        raise RecordError('traffic: no "traffic" list')
    out: list[SessionTraffic] = []
    for i, r in enumerate(rows):
        # type() is int: no bool, and JSON gives no int subclass
        if not (isinstance(r, list) and len(r) == 5 and all(type(v) is int and v >= 0 for v in r)):
            raise RecordError(
                f"traffic[{i}]: {r!r:.60} is not [id, rx_bytes, tx_bytes, rx_packets,"
                " tx_packets] of integers >= 0"
            )
        out.append(SessionTraffic(*r))
    return out
