"""MikroTik RouterOS 7: a script (.rsc) with the certificate and the SSTP client interface.

``/import file-name=X.rsc`` (or pasting it into a terminal) writes the certificate to a
file, imports it into the router's store, names it by its SHA-256 fingerprint, adds an
``/interface sstp-client`` that verifies the server's certificate and name, and the
routes. Everything it makes is named after the server (``sstpd-<name>``) and removed
first, so running it again replaces it instead of adding a second copy. The interface
is added disabled and without a password: the last comment says how to set both.
"""

from __future__ import annotations

import re

from sstpd.profiles.facts import ClientFacts

__all__ = ["render"]

SUPPORTED = ("mschapv2", "pap")
_ROS_METHOD = {"mschapv2": "mschap2", "pap": "pap"}
# OpenSSL suite -> RouterOS sstp-client cipher name (see config.DEFAULT_CIPHERS)
_ROS_CIPHER = {
    "ECDHE-RSA-AES256-GCM-SHA384": "aes256-gcm-sha384",
    "AES256-GCM-SHA384": "aes256-gcm-sha384",
    "ECDHE-RSA-AES256-SHA": "aes256-sha",
    "AES256-SHA": "aes256-sha",
}


def _q(text: str) -> str:
    """A RouterOS double-quoted string."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + out.replace("\n", "\\n") + '"'


def render(facts: ClientFacts, user: str | None, version: str) -> str:
    methods = ",".join(_ROS_METHOD[m] for m in facts.preferred(SUPPORTED))
    base = re.sub(r"[^A-Za-z0-9.-]", "-", facts.name)
    iface = f"sstp-{base}"[:64]
    tag = f"sstpd-{base}"
    ciphers = []
    for suite in facts.ciphers:
        name = _ROS_CIPHER.get(suite)
        if name and name not in ciphers:
            ciphers.append(name)
    tls = "only-1.3" if facts.tls_min_version == "1.3" else "any"
    lines = [
        f"# sstpd client profile for MikroTik RouterOS 7: SSTP client to {facts.target}",
        f"# Made by sstpd {version} from the server's configuration. It holds no secret:",
        "# set the password at the end. Run: /import file-name=<this file>.rsc",
        f"# Running it again replaces what it made (named {tag} / {iface}).",
        "",
        f"/ip route remove [find comment={_q(tag)}]",
        f"/interface sstp-client remove [find name={_q(iface)}]",
    ]
    if facts.trust is not None:
        fp = facts.trust.sha256.replace(":", "").lower()
        what = "self-signed server certificate" if facts.trust.self_signed_server else "CA"
        lines += [
            f"# The certificate to trust ({what}): {facts.trust.subject}",
            f"# SHA-256 {facts.trust.sha256}",
            f"/certificate remove [find name={_q(tag)}]",
            f"/file remove [find name={_q(tag + '.crt')}]",
            f"/file add name={_q(tag + '.crt')} contents={_q(facts.trust.pem)}",
            ":delay 1s",
            f'/certificate import file-name={_q(tag + ".crt")} passphrase=""',
            f"/certificate set [find fingerprint={_q(fp)}] name={_q(tag)}",
            f"/file remove [find name={_q(tag + '.crt')}]",
        ]
    else:
        lines.append("# The server's certificate is from a public CA the router trusts already.")
    add = [
        f"/interface sstp-client add name={_q(iface)} connect-to={facts.name}",
        f"port={facts.port}",
        f"user={_q(user or '')}",
        f"authentication={methods}",
        "verify-server-certificate=yes",
        "verify-server-address-from-certificate=yes",
        "pfs=yes",
        f"tls-version={tls}",
    ]
    if ciphers:
        add.append(f"ciphers={','.join(ciphers)}")
    add += [
        "add-default-route=no",
        f"comment={_q(tag)}",
        "disabled=yes",
    ]
    lines.append(" ".join(add))
    if facts.routes:
        lines.append("# Split tunnel: these networks go through the VPN.")
        for net in facts.routes:
            lines.append(f"/ip route add dst-address={net} gateway={_q(iface)} comment={_q(tag)}")
    else:
        lines.append(
            "# The server routes everything (full tunnel); to send all traffic through it:"
        )
        lines.append(
            f"#   /interface sstp-client set [find name={_q(iface)}] add-default-route=yes"
        )
    if facts.dns:
        lines.append(f"# DNS servers of the VPN: {', '.join(facts.dns)}")
    lines += [
        "# Now set the password and enable the interface:",
        f'#   /interface sstp-client set [find name={_q(iface)}] password="..." disabled=no',
    ]
    return "\n".join(lines) + "\n"
