"""sstpd.certs: self-signed certificates and fingerprints (checked against openssl)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from sstpd import certs
from sstpd.certs import (
    CertificateError,
    ensure_certificate,
    fingerprints,
    generate_self_signed,
    load_certificate_der,
    verify_key_pair,
)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


@pytest.fixture(scope="module")
def rsa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("rsa")
    cert, key = str(d / "server.crt"), str(d / "server.key")
    generate_self_signed(
        cert,
        key,
        common_name="vpn.example.org",
        sans=["vpn.example.org", "192.0.2.7", "2001:db8::1"],
    )
    return cert, key


def openssl_fingerprint(path: str, digest: str) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", path, "-noout", "-fingerprint", f"-{digest}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().split("=", 1)[1]


def test_rsa_certificate_contents(rsa_pair: tuple[str, str]) -> None:
    cert_path, key_path = rsa_pair
    cert = x509.load_der_x509_certificate(load_certificate_der(cert_path))
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "vpn.example.org"
    assert cert.issuer == cert.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 825 <= days <= 826
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    verify_key_pair(cert_path, key_path)


def test_ec_certificate_and_default_san(tmp_path: Path) -> None:
    cert_path, key_path = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    generate_self_signed(cert_path, key_path, common_name="host", sans=[], days=1, key_type="ec")
    cert = x509.load_der_x509_certificate(load_certificate_der(cert_path))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host"]
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    verify_key_pair(cert_path, key_path)
    assert sorted(os.listdir(tmp_path)) == ["c.pem", "k.pem"]


def test_bad_arguments(tmp_path: Path) -> None:
    c, k = str(tmp_path / "c"), str(tmp_path / "k")
    with pytest.raises(ValueError):
        generate_self_signed(c, k, common_name="", sans=[])
    with pytest.raises(ValueError):
        generate_self_signed(c, k, common_name="a", sans=["bad name"])
    with pytest.raises(ValueError):
        generate_self_signed(c, k, common_name="a", sans=[], days=0)
    with pytest.raises(ValueError):
        generate_self_signed(c, k, common_name="a", sans=[], key_type="dsa")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


@needs_openssl
def test_fingerprints_match_openssl(rsa_pair: tuple[str, str]) -> None:
    cert_path, _ = rsa_pair
    fp = fingerprints(load_certificate_der(cert_path))
    assert fp["sha256"] == openssl_fingerprint(cert_path, "sha256")
    assert fp["sha1"] == openssl_fingerprint(cert_path, "sha1")
    assert len(fp["sha256"]) == 32 * 3 - 1 and fp["sha256"] == fp["sha256"].upper()


def test_leaf_is_the_first_pem_block(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    cert_path, _ = rsa_pair
    other_c, other_k = str(tmp_path / "o.crt"), str(tmp_path / "o.key")
    generate_self_signed(other_c, other_k, common_name="other", sans=[], key_type="ec")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        b"subject=leaf\n" + Path(cert_path).read_bytes() + Path(other_c).read_bytes()
    )
    assert load_certificate_der(str(bundle)) == load_certificate_der(cert_path)
    der = tmp_path / "c.der"
    der.write_bytes(load_certificate_der(cert_path))
    assert load_certificate_der(str(der)) == der.read_bytes()


def test_load_errors(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    with pytest.raises(CertificateError, match="cannot read"):
        load_certificate_der(str(tmp_path / "missing"))
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match="not a certificate"):
        load_certificate_der(str(bad))
    bad.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(CertificateError, match="not a certificate"):
        load_certificate_der(str(bad))
    bad.write_bytes(b"garbage")
    with pytest.raises(CertificateError, match="not a certificate"):
        load_certificate_der(str(bad))


def test_verify_key_pair_mismatch(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    cert_path, _ = rsa_pair
    c2, k2 = str(tmp_path / "c2"), str(tmp_path / "k2")
    generate_self_signed(c2, k2, common_name="x", sans=[], key_type="ec")
    with pytest.raises(CertificateError, match="does not match"):
        verify_key_pair(cert_path, k2)
    Path(k2).write_text("nonsense")
    with pytest.raises(CertificateError, match="not a private key"):
        verify_key_pair(cert_path, k2)
    with pytest.raises(CertificateError, match="cannot read"):
        verify_key_pair(cert_path, str(tmp_path / "none"))


def test_ensure_certificate(tmp_path: Path) -> None:
    c, k = str(tmp_path / "tls" / "server.crt"), str(tmp_path / "tls" / "server.key")
    assert ensure_certificate(c, k, "host", ["host", "192.0.2.1"]) is True
    der = load_certificate_der(c)
    assert ensure_certificate(c, k, "host", ["host"]) is False
    assert load_certificate_der(c) == der
    os.unlink(k)
    with pytest.raises(CertificateError, match="not overwriting"):
        ensure_certificate(c, k, "host", ["host"])
    assert load_certificate_der(c) == der


def test_build_ca_and_a_server_certificate_it_issues() -> None:
    """The builder the sstpd_pki role uses: a CA, and a server certificate signed by it
    that is never valid beyond the CA."""
    ca_key, key = certs.new_key("ec"), certs.new_key("rsa")
    ca = certs.build_certificate(ca_key, common_name="sstpd CA", days=10, ca=True)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        ca.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    server = certs.build_certificate(
        key, common_name="vpn.example.com", sans=["vpn.example.com", "192.0.2.7"], days=825,
        issuer=(ca_key, ca),
    )  # fmt: skip
    server.verify_directly_issued_by(ca)
    assert server.issuer == ca.subject
    assert server.not_valid_after_utc == ca.not_valid_after_utc  # capped by the CA
    aki = server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.com"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for bad in ({"common_name": ""}, {"common_name": "x", "days": 0}):
        with pytest.raises(ValueError):
            certs.build_certificate(key, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neither an IP address"):
        certs.build_certificate(key, common_name="x", sans=["bad name"])
