"""ACME pieces without a CA: the challenge certificate, the renewal schedule, [acme]
configuration, the sstpctl cert text, the metrics."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from prometheus_client.parser import text_string_to_metric_families

from sstpd import acmeclient, certs
from sstpd.config import AcmeConfig, parse_config
from sstpd.ctl import cert_text
from sstpd.errors import ConfigError
from sstpd.records import CertRecord, StatsRecord
from sstpd.status.metrics import render_metrics

NAME = "sstp.example.test"
KEY_AUTH = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


def test_challenge_certificate_extension_bytes() -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, KEY_AUTH)
    cert = x509.load_pem_x509_certificate(cert_pem)
    digest = hashlib.sha256(KEY_AUTH.encode()).digest()
    ext = cert.extensions.get_extension_for_oid(acmeclient.ACME_IDENTIFIER_OID)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + digest  # type: ignore[attr-defined]
    # the whole Extension in DER, as RFC 8737 §3 lays it out
    expected = bytes.fromhex("303106082b0601050507011f0101ff04220420") + digest
    der = cert.public_bytes(serialization.Encoding.DER)
    assert expected in der
    # exactly one dNSName, the identifier
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NAME]
    assert len(list(san)) == 1
    # not the obsolete draft OID
    assert bytes.fromhex("2b0601050507011e01") not in der
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_acme_identifier_value_vector() -> None:
    # SHA-256("abc"), FIPS 180-2 appendix B.1
    value = acmeclient.acme_identifier_value("abc")
    assert value.hex() == ("0420ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def summary(tmp_path: Path, names: list[str], days: int = 90) -> dict[str, object]:
    certs.generate_self_signed(
        str(tmp_path / "c.pem"),
        str(tmp_path / "k.pem"),
        common_name=names[0],
        sans=names,
        days=days,
    )
    return certs.certificate_summary(str(tmp_path / "c.pem"))


def test_renewal_time(tmp_path: Path) -> None:
    s = summary(tmp_path, [NAME])
    assert s["self_signed"] is True and s["names"] == [NAME]
    assert acmeclient.renewal_time(None, (NAME,)) == 0
    assert acmeclient.renewal_time(s, (NAME,)) == 0  # self-signed: obtain now
    ca_issued = {**s, "self_signed": False}
    due = acmeclient.renewal_time(ca_issued, (NAME,))
    start, end = float(s["not_before"]), float(s["not_after"])  # type: ignore[arg-type]
    assert due == pytest.approx(start + (end - start) * 2 / 3)
    # a name the certificate lacks: obtain now
    assert acmeclient.renewal_time(ca_issued, (NAME, "other.example.test")) == 0


def test_backoff() -> None:
    assert [acmeclient.backoff(n, 60) for n in range(5)] == [0, 60, 120, 240, 480]
    assert acmeclient.backoff(20, 60) == acmeclient.MAX_BACKOFF
    assert acmeclient.backoff(10_000, 60) == acmeclient.MAX_BACKOFF


def test_acme_config() -> None:
    c = parse_config(
        f"""
[acme]
names = ["{NAME.upper()}", "vpn2.example.test."]
directory = "https://ca.example/dir"
email = "ops@example.test"
key_type = "rsa"
ca_file = "/etc/ssl/ca.pem"
challenge = "http-01"
http_port = 8080
retry_interval = 30
""",
        "/etc/sstpd/sstpd.toml",
    )
    assert c.acme == AcmeConfig(
        names=(NAME, "vpn2.example.test"),
        directory="https://ca.example/dir",
        email="ops@example.test",
        key_type="rsa",
        ca_file="/etc/ssl/ca.pem",
        challenge="http-01",
        http_port=8080,
        retry_interval=30.0,
    )
    assert c.acme.enabled
    assert not parse_config("").acme.enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[acme]\nnames = ["*.example.test"]', "is not a DNS name"),
        ('[acme]\nnames = ["under_score.test"]', "is not a DNS name"),
        ('[acme]\nnames = ["a.test", "A.test"]', "duplicates"),
        ('[acme]\nnames = ["a.test"]\ndirectory = "ftp://x"', "not an http(s) URL"),
        ('[acme]\nnames = ["a.test"]\nemail = "nobody"', "not an e-mail"),
        ('[acme]\nnames = ["a.test"]\nchallenge = "dns-01"', "not one of"),
        ('[acme]\nnames = ["a.test"]\nkey_type = "dsa"', "not one of"),
        ('[acme]\nnames = ["a.test"]\nhttp_port = 0', "out of range"),
        ('[acme]\nname = ["a.test"]', "did you mean 'names'"),
        (
            '[server]\ntls = false\ncert_hash_sha256 = "' + "ab" * 32 + '"\n'
            '[acme]\nnames = ["a.test"]',
            "use http-01",
        ),
        ('[server]\nchain = "c.pem"\n[acme]\nnames = ["a.test"]', "remove server.chain"),
    ],
)
def test_acme_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/sstpd/sstpd.toml")
    assert message in str(info.value)
    assert "/etc/sstpd/sstpd.toml:" in str(info.value) and "acme." in str(info.value)


def test_tls_false_with_http01_is_fine() -> None:
    c = parse_config(
        '[server]\ntls = false\ncert_hash_sha256 = "' + "ab" * 32 + '"\n'
        '[acme]\nnames = ["a.test"]\nchallenge = "http-01"'
    )
    assert c.acme.challenge == "http-01"


def test_cert_text(tmp_path: Path) -> None:
    s = summary(tmp_path, [NAME])
    answer = {
        "ok": True,
        "path": "/var/lib/sstpd/tls/server.crt",
        "certificate": {**s, "self_signed": False, "issuer": "CN=Pebble Intermediate CA"},
        "acme": {
            "names": [NAME],
            "directory": "https://ca/dir",
            "challenge": "tls-alpn-01",
            "next_renewal": float(s["not_before"]) + 3600,  # type: ignore[arg-type]
            "last_attempt": None,
            "last_success": None,
            "last_error": "cannot reach https://ca/dir: connection refused",
            "in_progress": False,
            "renewals": 1,
            "renewal_failures": 2,
            "pending_challenges": [],
        },
    }
    text = cert_text(CertRecord.from_json(answer))
    assert NAME in text and "Pebble Intermediate" in text and "self-signed" not in text
    assert "last error" in text and "connection refused" in text
    assert "1 (2 failed)" in text and "renewed" not in text and "worker" not in text
    plain = CertRecord.from_json({"ok": True, "certificate": s, "path": "/c", "acme": None})
    assert "not configured" in cert_text(plain)
    assert "new certificate installed" in cert_text(plain, renewed=True)


def test_metrics_without_acme_fields_still_render() -> None:
    # an older daemon's stats answer has no certificate fields
    stats = {
        "version": "x",
        "status": "ok",
        "accepting": True,
        "draining": False,
        "sessions": 0,
        "handshakes_in_progress": 0,
        "max_sessions": 1,
        "pool_size": 1,
        "pool_in_use": 0,
        "uptime": 1.0,
        "started_at": 1.0,
        "handshakes": {},
        "auth_failures": 0,
        "crypto_binding_failures": 0,
        "rx_bytes": 0,
        "tx_bytes": 0,
        "rx_packets": 0,
        "tx_packets": 0,
        "dropped_spoofed": 0,
        "dropped_overflow": 0,
        "dropped_dhcp": 0,
        "dhcp_answered": 0,
        "tun_no_route": 0,
        "handshake_latency": {"buckets": [], "sum": 0.0, "count": 0},
        "reloads": 0,
        "reload_failures": 0,
    }
    def families(answer: dict[str, Any]) -> dict[str, Any]:
        text = render_metrics(StatsRecord.from_json(answer))
        return {f.name: f for f in text_string_to_metric_families(text)}

    def renewals(fam: dict[str, Any]) -> dict[str, float]:
        return {s.labels["result"]: s.value for s in fam["sstpd_certificate_renewals"].samples}

    fam = families(stats)
    assert "sstpd_certificate_expiry_timestamp_seconds" not in fam
    assert renewals(fam) == {"ok": 0, "failed": 0}
    fam = families({**stats, "certificate_not_after": 1.9e9, "acme_renewal_failures": 3})
    assert fam["sstpd_certificate_expiry_timestamp_seconds"].samples[0].value == 1.9e9
    assert renewals(fam) == {"ok": 0, "failed": 3}


def test_openssl_fixes_the_certificate_when_the_tls_object_is_made(tmp_path: Path) -> None:
    """What the daemon relies on for renewals during handshakes (ServerProtocol takes the
    binding hashes at accept): a connection whose TLS object exists keeps the certificate
    even when the context is reloaded before the handshake runs."""
    import ssl

    for name in ("a", "b"):
        certs.generate_self_signed(
            str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"), common_name=name, sans=[]
        )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    server.load_cert_chain(str(tmp_path / "b.crt"), str(tmp_path / "b.key"))  # the "reload"
    c = client.wrap_bio(c_in, c_out)
    for _ in range(10):
        for obj in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert c.getpeercert(True) == certs.load_certificate_der(str(tmp_path / "a.crt"))


def _ca_issued_pem() -> bytes:
    import datetime

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
        )
        .sign(ca, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _fake_ca(with_ari: bool) -> tuple[str, Any]:
    """An HTTP server answering the directory and, optionally, renewalInfo."""
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == "/dir":
                body: dict[str, Any] = {"newNonce": f"{base}/nonce", "newOrder": f"{base}/o"}
                if with_ari:
                    body["renewalInfo"] = f"{base}/ari"
            elif self.path.startswith("/ari/") and with_ari:
                body = {
                    "suggestedWindow": {
                        "start": "2030-01-01T00:00:00Z",
                        "end": "2030-01-01T00:00:00Z",
                    }
                }
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/dir", srv


def test_ari_time_from_the_ca_or_none() -> None:
    import datetime

    pem = _ca_issued_pem()
    url, srv = _fake_ca(with_ari=True)
    try:
        when = acmeclient.ari_time(AcmeConfig(names=(NAME,), directory=url), pem)
    finally:
        srv.shutdown()
        srv.server_close()
    assert when == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()
    url, srv = _fake_ca(with_ari=False)
    try:
        assert acmeclient.ari_time(AcmeConfig(names=(NAME,), directory=url), pem) is None
    finally:
        srv.shutdown()
        srv.server_close()
    # a CA that is not there: None, not an exception
    dead = AcmeConfig(names=(NAME,), directory=url)
    assert acmeclient.ari_time(dead, pem) is None


def test_client_profiles_with_acme_import_nothing(tmp_path: Path) -> None:
    """`sstpd profile` for an ACME server: the public name, nothing to import, even while
    the placeholder is served or before the first start (no certificate yet)."""
    from sstpd.profiles.facts import client_facts

    text = (
        f'[server]\ncertificate = "{tmp_path}/c.pem"\nkey = "{tmp_path}/k.pem"\n'
        f'[acme]\nnames = ["{NAME}"]\n'
    )
    facts = client_facts(parse_config(text))  # no certificate at all yet
    assert facts.name == NAME and facts.trust is None
    certs.generate_self_signed(  # the placeholder
        str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), common_name=NAME, sans=[NAME]
    )
    facts = client_facts(parse_config(text))
    assert facts.name == NAME and facts.trust is None and facts.server_sha256
    # a private ACME CA: its root is what clients must trust
    private = parse_config(text.replace("[acme]", f'ca_certificate = "{tmp_path}/c.pem"\n[acme]'))
    assert client_facts(private).trust is not None


def test_bad_account_key_is_a_clear_failure(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "account.key").write_text("not a key\n")
    with pytest.raises(acmeclient.AcmeFailure, match=r"account\.key: not an unencrypted PEM"):
        acmeclient.obtain(
            AcmeConfig(names=(NAME,), directory="http://127.0.0.1:9/"), str(tmp_path), None
        )  # type: ignore[arg-type]
