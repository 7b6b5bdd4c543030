"""Self-signed server certificates and certificate fingerprints.

SSTP clients check that the server certificate carries the serverAuth extended key
usage and a name matching the host they dial ([MS-SSTP] 3.2.4.1), so a generated
certificate has both (CN and subjectAltName). The crypto binding hashes the DER of the
*leaf* certificate, which is what :func:`load_certificate_der` returns.

An RSA certificate has keyEncipherment as well as digitalSignature in its key usage:
MikroTik clients with ``pfs=no`` use RSA key exchange (see ``config.DEFAULT_CIPHERS``).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sstpd.errors import SstpdError
from sstpd.files import write_atomic

__all__ = [
    "CertificateError",
    "PrivateKey",
    "build_certificate",
    "certificate_summary",
    "ensure_certificate",
    "fingerprints",
    "general_name",
    "generate_self_signed",
    "load_certificate_der",
    "new_key",
    "private_key_pem",
    "verify_key_pair",
]

RSA_KEY_BITS = 2048
DEFAULT_DAYS = 825  # the longest validity Apple clients accept for a TLS server certificate
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


class CertificateError(SstpdError):
    """A certificate or key file is missing, unreadable, malformed or does not match."""


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(key_type: Literal["rsa", "ec"] = "rsa") -> PrivateKey:
    """RSA 2048 (``rsa``) or P-256 (``ec``)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {key_type!r}")


def build_certificate(
    key: PrivateKey,
    *,
    common_name: str,
    sans: list[str] | None = None,
    days: int = DEFAULT_DAYS,
    ca: bool = False,
    issuer: tuple[PrivateKey, x509.Certificate] | None = None,
) -> x509.Certificate:
    """The one certificate builder of the project (the daemon's self-signed certificate,
    ``sstpd cert``, and the CA and server certificate of the Ansible role sstpd_pki).

    * a server certificate (``ca=False``): serverAuth EKU, the ``sans`` (DNS names and IP
      addresses told apart by parsing; the common name when empty), keyEncipherment too
      for RSA keys; self-signed, or signed by ``issuer`` = (CA key, CA certificate),
      then with an authority key identifier and never valid beyond the CA;
    * a CA (``ca=True``, self-signed): basicConstraints CA with path length 0, keyCertSign
      and cRLSign.

    SHA-256, valid from an hour ago (client clock skew) for ``days`` days. Raises
    ValueError for bad arguments.
    """
    if not common_name:
        raise ValueError("the common name must not be empty")
    if days < 1:
        raise ValueError("the validity must be at least one day")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    signer: PrivateKey = key
    issuer_name = subject
    if issuer is not None:
        signer, issuer_cert = issuer
        issuer_name = issuer_cert.subject
        not_after = min(not_after, issuer_cert.not_valid_after_utc)
    public = key.public_key()
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate client clock skew
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=rsa_key and not ca,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        names = [general_name(name) for name in (sans or [common_name])]
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public), critical=False
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_self_signed(
    cert_path: str,
    key_path: str,
    *,
    common_name: str,
    sans: list[str],
    days: int = DEFAULT_DAYS,
    key_type: Literal["rsa", "ec"] = "rsa",
) -> None:
    """Create a self-signed server certificate and its private key.

    ``sans`` holds DNS names and IP addresses (told apart by parsing); when empty, the
    common name is used. The key is RSA 2048 (or P-256 for ``key_type="ec"``), signed
    with SHA-256; the key file is written atomically with mode 0600, the certificate
    with mode 0644. Existing files are replaced. Raises ValueError for bad arguments.
    """
    if not common_name:
        raise ValueError("the common name must not be empty")
    if days < 1:
        raise ValueError("the validity must be at least one day")
    key = new_key(key_type)
    cert = build_certificate(key, common_name=common_name, sans=sans, days=days)
    write_atomic(key_path, private_key_pem(key), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def general_name(name: str) -> x509.GeneralName:
    """A subjectAltName entry: an IP address, else an ASCII DNS name (ValueError)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name or not name.isascii() or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} is neither an IP address nor an ASCII DNS name")
    return x509.DNSName(name)


def load_certificate_der(path: str) -> bytes:
    """The DER of the leaf certificate in ``path``: the first PEM block, or the whole
    file when it is DER. Raises CertificateError."""
    return _load_certificate(path).public_bytes(serialization.Encoding.DER)


def _load_certificate(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertificateError(f"{path}: cannot read: {e.strerror or e}") from None
    match = _PEM_CERT_RE.search(data)
    try:
        if match:
            return x509.load_pem_x509_certificate(match.group(0))
        if b"-----BEGIN" in data:
            raise ValueError("no CERTIFICATE block")
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise CertificateError(f"{path}: not a certificate: {e}") from None


def fingerprints(der: bytes) -> dict[str, str]:
    """``{"sha256": "AB:CD:...", "sha1": "..."}``: digests of the DER certificate in the
    colon-separated upper-case form ``openssl x509 -fingerprint`` prints."""
    return {
        "sha256": _colon_hex(hashlib.sha256(der).digest()),
        "sha1": _colon_hex(hashlib.sha1(der).digest()),
    }


def _colon_hex(digest: bytes) -> str:
    return digest.hex(":").upper()


def verify_key_pair(cert_path: str, key_path: str) -> None:
    """Check that the leaf certificate and the (unencrypted PEM) private key load and
    belong together. Raises CertificateError."""
    cert = _load_certificate(cert_path)
    try:
        with open(key_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertificateError(f"{key_path}: cannot read: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(f"{key_path}: encrypted private keys are not supported") from None
    except ValueError as e:
        raise CertificateError(f"{key_path}: not a private key: {e}") from None
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, fmt) != cert.public_key().public_bytes(enc, fmt):
        raise CertificateError(f"{key_path}: the key does not match the certificate {cert_path}")


def ensure_certificate(cert_path: str, key_path: str, common_name: str, sans: list[str]) -> bool:
    """Create a self-signed certificate when neither file exists; True when it did.

    When exactly one of the two exists nothing is overwritten: CertificateError.
    """
    have_cert, have_key = os.path.exists(cert_path), os.path.exists(key_path)
    if have_cert and have_key:
        return False
    if have_cert or have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise CertificateError(f"{present} exists but {missing} does not; not overwriting it")
    generate_self_signed(cert_path, key_path, common_name=common_name, sans=sans)
    return True


def certificate_summary(path: str) -> dict[str, object]:
    """What ``sstpctl cert`` shows of the leaf certificate in ``path``: names (SAN DNS
    names and addresses), issuer and subject (RFC 4514), validity as Unix times, SHA-256
    fingerprint, whether it is self-signed. Raises CertificateError."""
    cert = _load_certificate(path)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "names": names,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.timestamp(),
        "not_after": cert.not_valid_after_utc.timestamp(),
        "sha256": hashlib.sha256(der).hexdigest(),
        "self_signed": cert.issuer == cert.subject,
    }
