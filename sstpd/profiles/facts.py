"""What a client needs to know, derived once from the running configuration.

:func:`client_facts` reads the configuration and the certificates it names and returns a
:class:`ClientFacts`; the renderers of the other modules only format it. Nothing secret
is in it: no key, no user's hash, no password.

Which certificate the client must trust:

* ``server.ca_certificate`` when it is set;
* else the served certificate when it is self-signed (``sstpd cert``, the appliance);
* else the self-signed CA that issued it, found in ``server.chain`` or in ``ca.crt``
  next to the certificate (where the ``sstpd_pki`` role puts its CA), and only when its
  signature on the certificate verifies;
* else none: a certificate from a public CA, which clients trust already.

The name clients dial is ``server.public_name``, else the certificate's common name when
the certificate lists it among its names, else its first DNS name, else its first
address. It must be a name the certificate carries: Windows and sstpc check it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from sstpd.config import Config
from sstpd.errors import SstpdError

__all__ = ["ClientFacts", "ProfileError", "TrustAnchor", "client_facts", "validate_user"]

_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)
# Windows and RouterOS know these names for the methods sstpd offers.
KNOWN_METHODS = ("eap-mschapv2", "mschapv2", "pap")


class ProfileError(SstpdError):
    """A profile cannot be made from this configuration (the reason says what to set)."""


@dataclass(frozen=True)
class TrustAnchor:
    """The certificate a client imports: PEM, DER, its subject and SHA-256 fingerprint."""

    pem: str
    der: bytes
    subject: str
    self_signed_server: bool  # the server's own certificate, not a CA

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).digest().hex(":").upper()


@dataclass(frozen=True)
class ClientFacts:
    """Everything the profile renderers use.

    ``name``/``port``: what the client dials. ``trust``: the certificate to import (None:
    a public CA, nothing to import). ``server_sha256``: fingerprint of the certificate
    the server presents (the configured hash behind a TLS offloader). ``methods``: PPP
    authentication in the server's order of preference. ``routes`` empty = full tunnel.
    """

    name: str
    port: int
    trust: TrustAnchor | None
    server_sha256: str
    methods: tuple[str, ...]
    dns: tuple[str, ...]
    routes: tuple[str, ...]
    domain: str
    tls_min_version: str
    ciphers: tuple[str, ...]
    mtu: int

    @property
    def full_tunnel(self) -> bool:
        return not self.routes

    @property
    def target(self) -> str:
        """host:port as sstpc and NetworkManager take it ([v6]:port for IPv6)."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return f"{host}:{self.port}"

    def preferred(self, supported: tuple[str, ...]) -> tuple[str, ...]:
        """The server's methods that a client supporting ``supported`` can use, in the
        server's order. Raises ProfileError when there is none."""
        usable = tuple(m for m in self.methods if m in supported)
        if not usable:
            raise ProfileError(
                f"the server offers {', '.join(self.methods)}; this client supports only "
                f"{', '.join(supported)} (auth.methods)"
            )
        return usable


def validate_user(user: str | None) -> str | None:
    """The user name to put in profiles (None: the client asks). Raises ProfileError for
    a name no users file can hold or that would not survive quoting (quotes, backslash)."""
    if user is None or user == "":
        return None
    from sstpd.users import validate_name

    reason = validate_name(user)
    if reason is None and any(c in user for c in "\"'`$\\;"):
        reason = "a user name in a profile must not contain quotes, '`', '$', ';' or '\\'"
    if reason:
        raise ProfileError(f"user {user!r}: {reason}")
    return user


def client_facts(config: Config) -> ClientFacts:
    """The facts of ``config`` (reads the certificate files it names).

    Raises ProfileError (or CertificateError from reading files) when the name clients
    dial cannot be known: set ``server.public_name`` then.
    """
    sc = config.server
    # with [acme] the certificate comes from a public CA (or the configured
    # server.ca_certificate) even while the daemon still serves its placeholder
    acme = config.acme.enabled
    readable = sc.tls and not (acme and not os.path.exists(sc.certificate))
    served = _read_chain(sc.certificate) if readable else []
    leaf = served[0] if served else None
    if leaf is not None:
        server_sha256 = _fp(leaf)
    elif sc.cert_hash_sha256 is not None:
        server_sha256 = sc.cert_hash_sha256.hex(":").upper()
    else:
        server_sha256 = ""
    name = sc.public_name or (config.acme.names[0] if acme else "")
    name = name or (_name_of(leaf) if leaf is not None else "")
    if not name:
        raise ProfileError(
            "the name clients connect to is unknown: set server.public_name "
            "(behind a TLS offloader the served certificate is not readable here)"
        )
    if name.startswith("*."):
        raise ProfileError(f"the certificate names {name}: set server.public_name")
    port = sc.public_port or (sc.port if sc.tls else 443)
    chain = _read_chain(sc.chain) if sc.tls and sc.chain else []
    if acme and not sc.ca_certificate:
        trust = None
    else:
        trust = _trust_anchor(sc.ca_certificate, leaf, served[1:] + chain, sc.certificate)
    tunnel = config.tunnel
    return ClientFacts(
        name=name,
        port=port,
        trust=trust,
        server_sha256=server_sha256,
        methods=tuple(config.auth.methods),
        dns=tuple(str(a) for a in tunnel.dns),
        routes=_split_routes(tunnel.routes),
        domain=tunnel.domain,
        tls_min_version=sc.tls_min_version,
        ciphers=tuple(sc.ciphers.split(":")),
        mtu=tunnel.mtu,
    )


def _split_routes(routes: tuple[ipaddress.IPv4Network, ...]) -> tuple[str, ...]:
    """The routes as strings; none (a full tunnel) when one of them is a default route."""
    if any(n.prefixlen == 0 for n in routes):
        return ()
    return tuple(str(n) for n in routes)


def _read_chain(path: str) -> list[x509.Certificate]:
    from sstpd.certs import CertificateError

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertificateError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        blocks = _PEM_RE.findall(data)
        if blocks:
            return [x509.load_pem_x509_certificate(b) for b in blocks]
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise CertificateError(f"{path}: not a certificate: {e}") from None


def _fp(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest().hex(":").upper()


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(ext.get_values_for_type(x509.DNSName))
    names += [str(a) for a in ext.get_values_for_type(x509.IPAddress)]
    return names


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _name_of(cert: x509.Certificate) -> str:
    cn, sans = _common_name(cert), _sans(cert)
    if cn and (cn in sans or not sans):
        return cn
    dns = [n for n in sans if not _is_address(n)]
    return (dns or sans or [""])[0]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    return _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _anchor(cert: x509.Certificate, server: bool) -> TrustAnchor:
    return TrustAnchor(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        der=cert.public_bytes(serialization.Encoding.DER),
        subject=cert.subject.rfc4514_string(),
        self_signed_server=server,
    )


def _trust_anchor(
    configured: str | None,
    leaf: x509.Certificate | None,
    intermediates: list[x509.Certificate],
    cert_path: str,
) -> TrustAnchor | None:
    if configured:
        certs = _read_chain(configured)
        return _anchor(certs[-1], server=leaf is not None and certs[-1] == leaf)
    if leaf is None:
        return None
    if _self_signed(leaf):
        return _anchor(leaf, server=True)
    # Walk up through the intermediates to the top certificate we have.
    top, pool = leaf, [c for c in intermediates if not _self_signed(c)]
    while True:
        parent = next((c for c in pool if c.subject == top.issuer and _issued_by(top, c)), None)
        if parent is None:
            break
        top, pool = parent, [c for c in pool if c is not parent]
    beside = os.path.join(os.path.dirname(cert_path), "ca.crt")
    candidates = [c for c in intermediates if _self_signed(c)]
    if os.path.exists(beside):
        candidates += [c for c in _read_chain(beside) if _self_signed(c)]
    for ca in candidates:
        if ca.subject == top.issuer and _issued_by(top, ca):
            return _anchor(ca, server=False)
    return None
