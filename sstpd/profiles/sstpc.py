"""sstpc (sstp-client) + pppd on Linux: a shell script around one sstpc command line.

Run as root, it writes the certificate to trust to ``/etc/ppp/sstpd/<name>.crt`` (for
``--ca-cert``), and with routes an ``/etc/ppp/ip-up.d`` hook that adds them when the tunnel
comes up (pppd itself adds only the route to the server's tunnel address), then runs::

    sstpc --ca-cert CERT --user USER --password PASSWORD NAME:PORT <pppd options>

The pppd options answer only the server's methods (``refuse-*``), take the address and
DNS servers from the server, and keep the default route (split tunnel) or replace it
(full tunnel, with ``--save-server-route`` so the tunnel's own connection keeps its
route). No secret: ``$SSTP_PASSWORD`` or a prompt gives the password, ``$SSTP_USER`` (or
the name given to ``sstpd profile --user``) the user. Extra arguments go to pppd, and
``$SSTPC_OPTIONS`` adds sstpc options (e.g. ``--log-stderr --log-level 4``).
"""

from __future__ import annotations

import re
import shlex

from sstpd.profiles.facts import ClientFacts

__all__ = ["render"]

SUPPORTED = ("eap-mschapv2", "mschapv2", "pap")
_REFUSE = {
    "eap-mschapv2": "refuse-eap",
    "pap": "refuse-pap",
    "mschapv2": "refuse-mschap-v2",
}


def render(facts: ClientFacts, user: str | None, version: str) -> str:
    usable = facts.preferred(SUPPORTED)
    # run-parts runs only names of letters, digits, '_' and '-' (no dots)
    tag = "sstpd-" + re.sub(r"[^A-Za-z0-9_-]", "-", facts.name)
    refuse = [opt for m, opt in _REFUSE.items() if m not in usable]
    refuse += ["refuse-chap", "refuse-mschap"]
    pppd = ["noauth", *refuse, "noipdefault", "usepeerdns", "ipparam", tag]
    sstpc = ["sstpc"]
    if facts.trust is not None:
        sstpc += ["--ca-cert", '"$CA"']
    if facts.full_tunnel:
        sstpc.append("--save-server-route")
        pppd += ["defaultroute", "replacedefaultroute"]
    else:
        pppd.append("nodefaultroute")
    sstpc += ["$SSTPC_OPTIONS", '--user "$SSTP_USER"', '--password "$SSTP_PASSWORD"']
    sstpc.append(shlex.quote(facts.target))
    command = " ".join([*sstpc, *pppd, '"$@"'])
    lines = [
        "#!/bin/sh",
        f"# sstpd client profile for sstpc + pppd (Linux): SSTP to {facts.target}",
        f"# Made by sstpd {version} from the server's configuration. No secret: the",
        "# password comes from $SSTP_PASSWORD or is asked. Run as root:",
        "#   sh <this file> [more pppd options, e.g. debug]",
        "set -eu",
        f"SSTP_USER=${{SSTP_USER:-{shlex.quote(user) if user else ''}}}",
        "SSTPC_OPTIONS=${SSTPC_OPTIONS:-}",
        "umask 022",
    ]
    if facts.trust is not None:
        lines += [
            f"# The certificate to trust: {facts.trust.subject}",
            f"# SHA-256 {facts.trust.sha256}",
            f"CA=/etc/ppp/sstpd/{shlex.quote(tag[6:])}.crt",
            'mkdir -p "$(dirname "$CA")"',
            "cat > \"$CA\" <<'SSTPD_CERTIFICATE'",
            facts.trust.pem.strip(),
            "SSTPD_CERTIFICATE",
        ]
    hook = f"/etc/ppp/ip-up.d/{tag}"
    if facts.routes:
        lines += [
            "# Split tunnel: pppd runs this once the tunnel is up (ipparam tells ours apart).",
            f"cat > {hook} <<'SSTPD_ROUTES'",
            "#!/bin/sh",
            f'[ "${{PPP_IPPARAM:-}}" = {tag} ] || exit 0',
            *[f'ip route replace {net} dev "$PPP_IFACE"' for net in facts.routes],
            "SSTPD_ROUTES",
            f"chmod 755 {hook}",
        ]
    else:
        lines.append(f"rm -f {hook}")
    lines += [
        'if [ -z "$SSTP_USER" ]; then',
        "    printf 'User: ' >&2",
        "    read -r SSTP_USER",
        "fi",
        'if [ -z "${SSTP_PASSWORD:-}" ]; then',
        '    printf "Password for %s: " "$SSTP_USER" >&2',
        "    stty -echo 2>/dev/null || true",
        "    read -r SSTP_PASSWORD",
        "    stty echo 2>/dev/null || true",
        "    echo >&2",
        "fi",
        "# shellcheck disable=SC2086  # $SSTPC_OPTIONS: several options",
        f"exec {command}",
    ]
    return "\n".join(lines) + "\n"
