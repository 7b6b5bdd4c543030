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
    "certificate_summary",
    "ensure_certificate",
    "fingerprints",
    "generate_self_signed",
    "load_certificate_der",
    "verify_key_pair",
]

RSA_KEY_BITS = 2048
DEFAULT_DAYS = 825  # the longest validity Apple clients accept for a TLS server certificate
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


class CertificateError(SstpdError):
    """A certificate or key file is missing, unreadable, malformed or does not match."""


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
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    elif key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unknown key type {key_type!r}")
    names = [_general_name(name) for name in (sans or [common_name])]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate client clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=key_type == "rsa",
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _general_name(name: str) -> x509.GeneralName:
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
