#!/usr/bin/python
"""Ansible module: a small CA and one server certificate, kept in a directory.

Runs on the controller (``delegate_to: localhost``, ``run_once: true``) so that every
sstpd node gets the same certificate and key. The certificates are built by the sstpd
package's own builder (``sstpd.certs.build_certificate``), imported from the checkout
named by ``source_dir`` (the one these roles live in). Needs the ``cryptography``
package, which ansible-core itself depends on.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: sstpd_pki_ca
short_description: Create, renew or inspect the sstpd CA and server certificate
description:
  - C(state=present) keeps C(ca.crt)/C(ca.key) and C(server.crt)/C(server.key) in
    I(path). The CA is created once; the server certificate (serverAuth EKU, the given
    SANs) is issued by it and re-issued when a SAN, the common name or the key type
    changes, when it was not signed by the CA, or when fewer than I(renew_before_days)
    days of validity are left. The CA is renewed with its existing key, so server
    certificates it issued stay valid and clients that trust it keep trusting it.
  - C(state=inspect) only reads I(certificate) (and checks that I(key) belongs to it).
  - Private keys are written with mode 0600. Supports check mode.
options:
  state: {type: str, choices: [present, inspect], default: present}
  path: {type: path, description: Directory of the CA and server files (state=present).}
  ca_common_name: {type: str, default: sstpd CA}
  common_name: {type: str}
  sans: {type: list, elements: str, default: []}
  key_type: {type: str, choices: [rsa, ec], default: rsa}
  ca_days: {type: int, default: 3650}
  days: {type: int, default: 825}
  renew_before_days: {type: int, default: 30}
  certificate: {type: path, description: Certificate to read (state=inspect).}
  key: {type: path, description: Key that must match I(certificate) (state=inspect).}
  source_dir:
    type: path
    description: The sstpd checkout whose sstpd.certs builds the certificates (state=present).
"""

RETURN = r"""
certificate: {description: Path of the server certificate., type: str}
key: {description: Path of the server key., type: str}
ca_certificate: {description: Path of the CA certificate (state=present)., type: str}
fingerprint_sha256: {description: "SHA-256 of the DER server certificate, AB:CD:.. form", type: str}
not_after: {description: End of validity of the server certificate (ISO 8601)., type: str}
sans: {description: The subject alternative names of the server certificate., type: list}
reasons: {description: Why files were (or in check mode would be) written., type: list}
"""

import datetime
import hashlib
import importlib
import importlib.util
import ipaddress
import os
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the module
    HAVE_CRYPTOGRAPHY = False



def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _sstpd_certs(source_dir):
    """``sstpd.certs`` from the checkout: only the ``sstpd`` package is made importable."""
    init = os.path.join(os.path.realpath(source_dir or "."), "sstpd", "__init__.py")
    if "sstpd" not in sys.modules and os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(
            "sstpd", init, submodule_search_locations=[os.path.dirname(init)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["sstpd"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("sstpd.certs")


def _not_after(cert):
    try:
        return cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _san_strings(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def _normalise_sans(sans):
    out = []
    for name in sans:
        name = str(name).strip()
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            name = name.lower()
        if name and name not in out:
            out.append(name)
    return out


def _key_type(key):
    return "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"


def _public_der(key_or_cert):
    return key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_cert(path):
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def _write(path, data, mode):
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=".sstpd-pki.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _signed_by(cert, ca_cert):
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except AttributeError:  # cryptography < 40: compare the authority key identifier
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            return False
        return (
            aki.key_identifier
            == x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key()).digest
        )
    except Exception:
        return False
    return True


def _describe(cert):
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "fingerprint_sha256": hashlib.sha256(der).digest().hex(":").upper(),
        "not_after": _not_after(cert).isoformat(),
        "sans": sorted(_san_strings(cert)),
    }


def inspect(module):
    p = module.params
    if not p["certificate"]:
        module.fail_json(msg="state=inspect needs certificate")
    try:
        cert = _load_cert(p["certificate"])
    except (OSError, ValueError) as e:
        module.fail_json(msg=f"{p['certificate']}: not a readable certificate: {e}")
    if p["key"]:
        try:
            key = _load_key(p["key"])
        except (OSError, ValueError, TypeError) as e:
            module.fail_json(msg=f"{p['key']}: not a readable unencrypted PEM private key: {e}")
        if _public_der(key) != _public_der(cert):
            module.fail_json(
                msg=f"{p['key']} does not belong to the certificate {p['certificate']}"
            )
    usages = []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = [u.dotted_string for u in eku]
    except x509.ExtensionNotFound:
        pass
    if usages and ExtendedKeyUsageOID.SERVER_AUTH.dotted_string not in usages:
        module.fail_json(msg=f"{p['certificate']}: the certificate lacks the serverAuth usage")
    module.exit_json(changed=False, certificate=p["certificate"], key=p["key"], **_describe(cert))


def present(module):
    p = module.params
    if not p["path"] or not p["common_name"]:
        module.fail_json(msg="state=present needs path and common_name")
    try:
        certs = _sstpd_certs(p["source_dir"])
    except ImportError as e:
        module.fail_json(msg=f"the sstpd package is not in {p['source_dir']}: {e}")
    sans = _normalise_sans(p["sans"] or [p["common_name"]])
    for name in sans:
        try:
            certs.general_name(name)
        except ValueError as e:
            module.fail_json(msg=f"bad subject alternative name {name!r}: {e}")
    renew = datetime.timedelta(days=p["renew_before_days"])
    if p["days"] <= p["renew_before_days"] or p["ca_days"] <= p["renew_before_days"]:
        module.fail_json(msg="days and ca_days must be longer than renew_before_days")
    path = p["path"]
    files = {n: os.path.join(path, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key")}
    check = module.check_mode
    reasons = []
    writes = {}

    if not os.path.isdir(path):
        reasons.append(f"create {path}")
        if not check:
            os.makedirs(path, mode=0o700, exist_ok=True)

    # the CA
    ca_key = ca_cert = None
    if os.path.exists(files["ca.key"]):
        try:
            ca_key = _load_key(files["ca.key"])
        except (ValueError, TypeError) as e:
            module.fail_json(msg=f"{files['ca.key']}: unreadable CA key: {e}")
    if ca_key is None:
        ca_key = certs.new_key(p["key_type"])
        writes["ca.key"] = (certs.private_key_pem(ca_key), 0o600)
        reasons.append("new CA key")
    else:
        try:
            ca_cert = _load_cert(files["ca.crt"])
        except (OSError, ValueError):
            ca_cert = None
    if ca_cert is not None and _public_der(ca_cert) != _public_der(ca_key):
        reasons.append("the CA certificate does not match the CA key")
        ca_cert = None
    if ca_cert is not None and _not_after(ca_cert) - renew < _now():
        reasons.append("the CA certificate expires soon")
        ca_cert = None
    if ca_cert is None:
        ca_cert = certs.build_certificate(
            ca_key, common_name=p["ca_common_name"], days=p["ca_days"], ca=True
        )
        writes["ca.crt"] = (_cert_pem(ca_cert), 0o644)
        if "new CA key" not in reasons:
            reasons.append("CA certificate (re)issued")

    # the server certificate
    key = cert = None
    if os.path.exists(files["server.key"]):
        try:
            key = _load_key(files["server.key"])
        except (ValueError, TypeError) as e:
            module.fail_json(msg=f"{files['server.key']}: unreadable server key: {e}")
        if _key_type(key) != p["key_type"]:
            reasons.append("key type changed")
            key = None
    if key is None:
        key = certs.new_key(p["key_type"])
        writes["server.key"] = (certs.private_key_pem(key), 0o600)
        reasons.append("new server key")
    else:
        try:
            cert = _load_cert(files["server.crt"])
        except (OSError, ValueError):
            reasons.append("no server certificate")
    if cert is not None:
        why = None
        if _public_der(cert) != _public_der(key):
            why = "the server certificate does not match its key"
        elif not _signed_by(cert, ca_cert):
            why = "the server certificate was not issued by this CA"
        elif _san_strings(cert) != set(sans):
            why = "the subject alternative names changed"
        elif cert.subject.rfc4514_string() != f"CN={p['common_name'][:64]}":
            why = "the common name changed"
        elif _not_after(cert) - renew < _now():
            why = "the server certificate expires soon"
        if why:
            reasons.append(why)
            cert = None
    if cert is None:
        cert = certs.build_certificate(
            key, common_name=p["common_name"], sans=sans, days=p["days"], issuer=(ca_key, ca_cert)
        )
        writes["server.crt"] = (_cert_pem(cert), 0o644)

    # private keys stay 0600 even if someone loosened them
    for name in ("ca.key", "server.key"):
        if name not in writes and os.stat(files[name]).st_mode & 0o077:
            reasons.append(f"{name}: mode set to 0600")
            if not check:
                os.chmod(files[name], 0o600)

    if not check:
        # keys first: a certificate never points to a key that is not there yet
        for name in ("ca.key", "ca.crt", "server.key", "server.crt"):
            if name in writes:
                _write(files[name], *writes[name])
    module.exit_json(
        changed=bool(reasons),
        reasons=reasons,
        certificate=files["server.crt"],
        key=files["server.key"],
        ca_certificate=files["ca.crt"],
        **_describe(cert),
    )


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "inspect"], "default": "present"},
            "path": {"type": "path"},
            "ca_common_name": {"type": "str", "default": "sstpd CA"},
            "common_name": {"type": "str"},
            "sans": {"type": "list", "elements": "str", "default": []},
            "key_type": {"type": "str", "choices": ["rsa", "ec"], "default": "rsa"},
            "ca_days": {"type": "int", "default": 3650},
            "days": {"type": "int", "default": 825},
            "renew_before_days": {"type": "int", "default": 30},
            "certificate": {"type": "path"},
            "key": {"type": "path", "no_log": False},
            "source_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    if not HAVE_CRYPTOGRAPHY:
        module.fail_json(msg="the cryptography package is needed on the controller")
    if module.params["state"] == "inspect":
        inspect(module)
    else:
        present(module)


if __name__ == "__main__":
    main()
