"""NetworkManager: a keyfile (.nmconnection) for the network-manager-sstp plugin.

The ``[vpn]`` keys are the plugin's data items (``NM_SSTP_KEY_*`` in its
nm-sstp-service.h): ``gateway``, ``user``, ``ca-cert``, ``password-flags`` and the
``refuse-*`` switches. ``password-flags=2`` (not saved): NetworkManager asks for the
password on every connect, so the file holds no secret. The certificate to trust is at
the end of the file as comment lines, with the command that installs it where
``ca-cert`` points.
"""

from __future__ import annotations

import re
import uuid

from sstpd.profiles.facts import ClientFacts

__all__ = ["ca_path", "render"]

SUPPORTED = ("eap-mschapv2", "mschapv2", "pap")
# sstpd method -> the pppd refuse-* keys that must stay off for it
_NEEDS = {"eap-mschapv2": "refuse-eap", "mschapv2": "refuse-mschapv2", "pap": "refuse-pap"}
_REFUSE = ("refuse-eap", "refuse-pap", "refuse-chap", "refuse-mschap", "refuse-mschapv2")
CERT_DIR = "/etc/NetworkManager/sstpd"


def ca_path(facts: ClientFacts) -> str:
    return f"{CERT_DIR}/{_base(facts)}.crt"


def _base(facts: ClientFacts) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", facts.name)


def _value(text: str) -> str:
    """A keyfile value: GKeyFile escapes."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return "\\s" + text[1:] if text.startswith(" ") else text


def render(facts: ClientFacts, user: str | None, version: str) -> str:
    usable = facts.preferred(SUPPORTED)
    allowed = {_NEEDS[m] for m in usable}
    base = _base(facts)
    # the same server gives the same UUID: importing a newer profile replaces the old one
    conn_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"sstpd-profile.{facts.name}.{facts.port}")
    path = ca_path(facts)
    lines = [
        f"# sstpd client profile for NetworkManager (network-manager-sstp): {facts.target}",
        f"# Made by sstpd {version} from the server's configuration. No secret: the",
        "# password is asked on every connect (password-flags=2). Install as root:",
        f"#   install -d {CERT_DIR}",
        f"#   sed -n 's/^#| //p' {base}.nmconnection > {path}"
        if facts.trust
        else "#   (no certificate to install: the server's comes from a public CA)",
        f"#   install -m 600 {base}.nmconnection /etc/NetworkManager/system-connections/",
        "#   nmcli connection reload",
        "[connection]",
        f"id={_value(facts.name)}",
        f"uuid={conn_uuid}",
        "type=vpn",
        "autoconnect=false",
        "",
        "[vpn]",
        "service-type=org.freedesktop.NetworkManager.sstp",
        # sstpc's default port is 443; the plugin accepts no [brackets] around IPv6
        f"gateway={_value(facts.name if facts.port == 443 else facts.target)}",
    ]
    if user:
        lines.append(f"user={_value(user)}")
    if facts.trust is not None:
        lines.append(f"ca-cert={_value(path)}")
    lines.append("password-flags=2")
    for key in _REFUSE:
        lines.append(f"{key}={'no' if key in allowed else 'yes'}")
    lines += ["", "[ipv4]", "method=auto"]
    if facts.routes:
        lines.append("never-default=true")
        lines += [f"route{i}={net}" for i, net in enumerate(facts.routes, 1)]
    if facts.domain:
        lines.append(f"dns-search={_value(facts.domain)};")
    lines += ["", "[ipv6]", "method=disabled", ""]
    if facts.trust is not None:
        lines.append(f"# The certificate to trust ({facts.trust.subject}),")
        lines.append(f"# SHA-256 {facts.trust.sha256}:")
        lines += [f"#| {line}" for line in facts.trust.pem.strip().splitlines()]
    return "\n".join(lines) + "\n"
