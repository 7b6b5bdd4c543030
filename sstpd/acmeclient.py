"""Obtaining a certificate from an ACME CA (RFC 8555) and the TLS-ALPN-01 certificate.

Everything here blocks (HTTP to the CA, key generation): the daemon runs :func:`obtain`
in a thread executor (``sstpd.aio.acme``), never on the event loop. The protocol is the
``acme`` package (certbot's client) with ``josepy``; keys, CSR and the challenge
certificate are built with ``cryptography``.

State in ``<state_directory>/acme/`` (directory 0700, files 0600): ``account.key`` (the
account's EC P-256 key, PEM), ``account.json`` (the registration), ``order.json`` (the
order in progress or last finished: URL, status, names).

TLS-ALPN-01 (RFC 8737): the challenge certificate is self-signed, names exactly the
identifier in one dNSName and carries the critical id-pe-acmeIdentifier extension
(1.3.6.1.5.5.7.1.31) whose value is the DER OCTET STRING of SHA-256(key authorization).
The ``acme`` package no longer ships TLS-ALPN-01 classes (removed in certbot 5), so the
response type is declared here.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import josepy as jose
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from sstpd.config import AcmeConfig
from sstpd.files import write_atomic

log = logging.getLogger("sstpd.acme")

ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
TLS_ALPN_01 = "tls-alpn-01"
HTTP_01 = "http-01"
ORDER_TIMEOUT = 180.0  # seconds to wait for validation and issuance


class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The (empty) response to a tls-alpn-01 challenge: "ready, validate now"."""

    typ = TLS_ALPN_01


challenges.ChallengeResponse.register(TLSALPN01Response)


class AcmeFailure(Exception):
    """Obtaining a certificate failed; the message says why (for the log and sstpctl)."""


class ChallengeHost(Protocol):
    """Where :func:`obtain` puts the challenge answers while the CA validates."""

    def add_tls_alpn(self, name: str, cert_pem: bytes, key_pem: bytes) -> None: ...
    def remove_tls_alpn(self, name: str) -> None: ...
    def add_http(self, token: str, key_authorization: str) -> None: ...
    def remove_http(self, token: str) -> None: ...


@dataclass(frozen=True)
class Issued:
    fullchain_pem: bytes
    key_pem: bytes
    order_url: str


# ---------------------------------------------------------------------------------------
# the TLS-ALPN-01 certificate


def acme_identifier_value(key_authorization: str) -> bytes:
    """extnValue of id-pe-acmeIdentifier: DER ``OCTET STRING (SIZE (32))``."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode("ascii")).digest()


def challenge_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) answering tls-alpn-01 for ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                ACME_IDENTIFIER_OID, acme_identifier_value(key_authorization)
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# ---------------------------------------------------------------------------------------
# state files


def state_dir(state_directory: str) -> str:
    path = os.path.join(state_directory, "acme")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise AcmeFailure(f"{path}: {exc.strerror or exc}") from None
    return path


def _account_key(directory: str) -> JWKEC:
    path = os.path.join(directory, "account.key")
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            write_atomic(path, _key_pem(key), 0o600)
        except OSError as exc:
            raise AcmeFailure(f"{path}: cannot write: {exc.strerror or exc}") from None
        log.info("ACME: created account key %s", path)
    except OSError as exc:
        raise AcmeFailure(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise AcmeFailure(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeFailure(f"{path}: not an EC private key")
    return JWKEC(key=key)


def save_order(directory: str, **fields: Any) -> None:
    write_atomic(
        os.path.join(directory, "order.json"),
        json.dumps(fields, indent=2, sort_keys=True).encode(),
        0o600,
    )


def new_certificate_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(names: tuple[str, ...], key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------
# the order


def obtain(
    cfg: AcmeConfig,
    state_directory: str,
    host: ChallengeHost,
    stop: Callable[[], bool] = lambda: False,
) -> Issued:
    """Register (once), order a certificate for ``cfg.names``, answer the challenges
    through ``host``, finalize, return the chain and the new key. Blocking.

    Raises AcmeFailure with a one-line reason."""
    try:
        return _obtain(cfg, state_directory, host, stop)
    except AcmeFailure:
        raise
    except messages.Error as exc:
        raise AcmeFailure(f"the CA refused: {exc.typ or ''} {exc.detail or exc}".strip()) from exc
    except errors.ValidationError as exc:
        reasons = []
        for authzr in exc.failed_authzrs:
            for challb in authzr.body.challenges:
                if challb.error is not None:
                    reasons.append(f"{authzr.body.identifier.value}: {challb.error.detail}")
        raise AcmeFailure("validation failed: " + ("; ".join(reasons) or str(exc))) from exc
    except errors.TimeoutError as exc:
        raise AcmeFailure(f"the CA did not finish the order in {ORDER_TIMEOUT:g} s") from exc
    except errors.Error as exc:
        raise AcmeFailure(f"ACME error: {exc}") from exc
    except OSError as exc:  # requests' ConnectionError/SSLError are OSErrors
        raise AcmeFailure(f"cannot reach {cfg.directory}: {_short(exc)}") from exc
    except (ValueError, KeyError, jose.errors.Error) as exc:
        raise AcmeFailure(f"unexpected answer from the CA: {exc}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc)
    # requests nests the reason deep inside a MaxRetryError: keep its last part
    for marker in ("Caused by ", "Errno"):
        if marker in text:
            text = text[text.rfind(marker) :]
    return text.rstrip(")'\"")[:300]


def _obtain(
    cfg: AcmeConfig, state_directory: str, host: ChallengeHost, stop: Callable[[], bool]
) -> Issued:
    directory = state_dir(state_directory)
    account_key = _account_key(directory)
    verify: Any = cfg.ca_file or True
    net = client.ClientNetwork(account_key, alg=ES256, verify_ssl=verify, user_agent="sstpd")
    acme = client.ClientV2(client.ClientV2.get_directory(cfg.directory, net), net)
    account_path = os.path.join(directory, "account.json")
    regr = _load_account(account_path, cfg.directory)
    if regr is None:
        new = messages.NewRegistration.from_data(
            email=cfg.email or None, terms_of_service_agreed=True
        )
        try:
            regr = acme.new_account(new)
        except errors.ConflictError as exc:  # the key is registered already
            regr = acme.query_registration(messages.RegistrationResource(uri=exc.location))
        write_atomic(
            account_path,
            json.dumps({"directory": cfg.directory, "uri": regr.uri}).encode(),
            0o600,
        )
        log.info("ACME: registered account %s", regr.uri)
    net.account = regr

    cert_key = new_certificate_key(cfg.key_type)
    order = acme.new_order(make_csr(cfg.names, cert_key))
    save_order(directory, url=order.uri, status="pending", names=list(cfg.names))
    log.info("ACME: order %s for %s", order.uri, ", ".join(cfg.names))
    thumbprint = b64encode(account_key.public_key().thumbprint(hashes.SHA256)).decode()
    cleanup: list[Callable[[], None]] = []
    try:
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            name = authzr.body.identifier.value
            challb = _pick(authzr, cfg.challenge)
            token = challb.chall.to_partial_json()["token"]
            key_auth = f"{token}.{thumbprint}"
            if cfg.challenge == TLS_ALPN_01:
                cert_pem, key_pem = challenge_certificate(name, key_auth)
                host.add_tls_alpn(name, cert_pem, key_pem)
                cleanup.append(lambda n=name: host.remove_tls_alpn(n))  # type: ignore[misc]
                response: challenges.ChallengeResponse = TLSALPN01Response(
                    key_authorization=key_auth
                )
            else:
                host.add_http(token, key_auth)
                cleanup.append(lambda t=token: host.remove_http(t))  # type: ignore[misc]
                response = challenges.HTTP01Response(key_authorization=key_auth)
            if stop():
                raise AcmeFailure("stopped")
            log.info("ACME: answering %s for %s", cfg.challenge, name)
            acme.answer_challenge(challb, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
        done = acme.poll_and_finalize(order, deadline)
    except Exception:
        save_order(directory, url=order.uri, status="failed", names=list(cfg.names))
        raise
    finally:
        for undo in cleanup:
            undo()
    if not done.fullchain_pem:
        raise AcmeFailure("the CA finalized the order without a certificate")
    save_order(directory, url=order.uri, status="valid", names=list(cfg.names))
    return Issued(done.fullchain_pem.encode(), _key_pem(cert_key), order.uri)


def _load_account(path: str, directory_url: str) -> messages.RegistrationResource | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("directory") != directory_url:
        return None  # another CA: register anew with the same key
    uri = data.get("uri")
    if not isinstance(uri, str):
        return None
    return messages.RegistrationResource(uri=uri, body=messages.Registration())


def _pick(authzr: messages.AuthorizationResource, typ: str) -> messages.ChallengeBody:
    offered = []
    for challb in authzr.body.challenges:
        kind = challb.chall.to_partial_json().get("type")
        offered.append(str(kind))
        if kind == typ:
            return challb
    raise AcmeFailure(
        f"the CA offers no {typ} challenge for {authzr.body.identifier.value} "
        f"(offered: {', '.join(offered) or 'none'})"
    )


# ---------------------------------------------------------------------------------------
# when to renew

RENEW_AT = 2 / 3  # of the lifetime
MAX_BACKOFF = 86400.0


def renewal_time(summary: dict[str, Any] | None, names: tuple[str, ...]) -> float:
    """Unix time at which the certificate described by ``summary``
    (``certs.certificate_summary``) should be replaced: two thirds into its lifetime;
    0 (now) when there is none, it is self-signed, expired or lacks one of ``names``."""
    if summary is None or summary["self_signed"]:
        return 0.0
    if not set(names) <= {str(n).lower() for n in summary["names"]}:
        return 0.0
    start, end = float(summary["not_before"]), float(summary["not_after"])
    return start + (end - start) * RENEW_AT


def backoff(failures: int, base: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures: base, 2 base, 4 base, ...
    up to a day."""
    if failures <= 0:
        return 0.0
    return float(min(base * 2 ** min(failures - 1, 30), MAX_BACKOFF))


def ari_time(cfg: AcmeConfig, cert_pem: bytes) -> float | None:
    """Unix time the CA suggests renewing ``cert_pem`` (ACME Renewal Information,
    RFC 9773: a random time in its suggested window), or None when the CA offers none or
    cannot be asked now. Blocking; never raises for network or CA trouble."""
    try:
        net = client.ClientNetwork(None, verify_ssl=cfg.ca_file or True, user_agent="sstpd")  # type: ignore[arg-type]
        acme = client.ClientV2(client.ClientV2.get_directory(cfg.directory, net), net)
        when, _ = acme.renewal_time(cert_pem)
    except (errors.Error, OSError, ValueError, KeyError, jose.errors.Error) as exc:
        log.info("ACME: no renewal information from the CA: %s", _short(exc))
        return None
    return when.timestamp() if when is not None else None
