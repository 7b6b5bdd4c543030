"""TLS for the daemon: the server context, loading the certificate, what it is.

``make_ssl_context`` builds the listeners' context once at start; a reload calls
``configure_tls`` on that same live context (new handshakes use the new certificate,
established connections keep theirs). ``binding_hashes`` are the certificate hashes the
SSTP crypto binding is checked against; ``cert_summary`` is what ``sstpctl cert`` and the
ACME manager read.

``DirectSSLObject`` is the class the daemon's contexts wrap connections in: the TLS
transport (uvloop's, asyncio's) calls ``read`` and ``pending`` once per TLS record, and
``ssl.SSLObject``'s Python methods only forward to the C object's; binding the C methods
on the instance takes that Python frame out of every record (0.1 µs of 1.3 per 1404-byte
record with ``bench/tls_records.py``'s loop, about 7 %).
"""

from __future__ import annotations

import ssl
import tempfile
from typing import Any

from sstpd import certs
from sstpd.config import DEFAULT_CIPHERS, Config
from sstpd.files import check_secret_mode
from sstpd.proto.sstp.binding import cert_hashes as hashes_of
from sstpd.proto.sstp.constants import HashProtocol


class DirectSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` whose ``read``, ``write`` and ``pending`` are the C object's own
    methods (same signatures, results and exceptions as the Python wrappers, which only
    forward; ``read``'s buffer is positional and never None, as every transport calls it)."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
        self: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        c = self._sslobj  # type: ignore[attr-defined]
        self.read = c.read  # type: ignore[method-assign]
        self.write = c.write  # type: ignore[method-assign]
        self.pending = c.pending  # type: ignore[method-assign]
        return self


def direct_objects(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``ctx`` wrapping its connections in ``DirectSSLObject``."""
    ctx.sslobject_class = DirectSSLObject
    return ctx


def make_ssl_context(config: Config) -> ssl.SSLContext:
    """TLS >= 1.2 server context with the configured certificate, key and chain.

    Cipher choice (TLS 1.2): ECDHE with AES-GCM first (what Windows 10/11 negotiate), then
    the RSA-key-exchange AES suites MikroTik RouterOS uses with pfs=no. TLS 1.3 suites are
    OpenSSL's defaults (Windows 11 uses TLS 1.3)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    configure_tls(ctx, config)
    return direct_objects(ctx)


def configure_tls(ctx: ssl.SSLContext, config: Config) -> None:
    """Minimum version, ciphers and certificate: what a reload changes on the live context
    (handshakes after this call use the new values, established connections keep theirs)."""
    sc = config.server
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if sc.tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.set_ciphers(sc.ciphers or DEFAULT_CIPHERS)
    load_certificate(ctx, config)


def load_certificate(ctx: ssl.SSLContext, config: Config) -> None:
    sc = config.server
    check_secret_mode(sc.key)  # the private key: 0600 (or 0640 with our group) only
    if not sc.chain:
        ctx.load_cert_chain(str(sc.certificate), str(sc.key))
        return
    # the chain lives in its own file: OpenSSL wants leaf + chain in one
    with open(sc.certificate, "rb") as f:
        pem = f.read()
    with open(sc.chain, "rb") as f:
        pem += b"\n" + f.read()
    with tempfile.NamedTemporaryFile(prefix="sstpd-chain-") as tmp:
        tmp.write(pem)
        tmp.flush()
        ctx.load_cert_chain(tmp.name, str(sc.key))


def binding_hashes(config: Config) -> dict[HashProtocol, bytes]:
    """The certificate hashes the crypto binding is checked against.

    Configured hashes win (TLS offload: the offloader's certificate); otherwise the hashes
    of the leaf certificate we present."""
    sc = config.server
    out: dict[HashProtocol, bytes] = {}
    if sc.tls:
        out.update(hashes_of(certs.load_certificate_der(str(sc.certificate))))
    if sc.cert_hash_sha1:
        out[HashProtocol.SHA1] = sc.cert_hash_sha1
    if sc.cert_hash_sha256:
        out[HashProtocol.SHA256] = sc.cert_hash_sha256
    return out


def cert_summary(config: Config) -> dict[str, Any] | None:
    """``certs.certificate_summary`` of the served certificate (None: unreadable, or no TLS
    here and no ACME). Behind a TLS offloader with ACME (http-01) it is the certificate
    obtained for the offloader: its expiry drives the renewals."""
    if not config.server.tls and not config.acme.enabled:
        return None
    try:
        return certs.certificate_summary(config.server.certificate)
    except certs.CertificateError:
        return None
