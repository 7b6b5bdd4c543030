"""Client profiles: the setup of a client, written from the running configuration.

    sstpd profile windows|mikrotik|networkmanager|sstpc|certificate [--user NAME]

:func:`client_facts` (``facts.py``) derives what a client needs from the configuration;
one small renderer per platform formats it. The status app serves the same files on
``/profiles/<platform>``. No profile holds a secret: passwords are asked on the client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sstpd import __version__
from sstpd.config import Config
from sstpd.profiles import mikrotik, networkmanager, sstpc, windows
from sstpd.profiles.facts import ClientFacts, ProfileError, client_facts, validate_user

__all__ = ["PLATFORMS", "ClientFacts", "Profile", "ProfileError", "client_facts", "make_profile"]


@dataclass(frozen=True)
class Profile:
    """A rendered profile: ``filename`` to save it as, its ``content_type`` and ``text``."""

    filename: str
    content_type: str
    text: str


Renderer = Callable[[ClientFacts, "str | None", str], str]


def _certificate(facts: ClientFacts, user: str | None, version: str) -> str:
    if facts.trust is None:
        raise ProfileError("the server's certificate is from a public CA: nothing to trust")
    return facts.trust.pem


# platform -> (renderer, file suffix, content type, what it is)
PLATFORMS: dict[str, tuple[Renderer, str, str, str]] = {
    "windows": (windows.render, ".ps1", "text/plain; charset=utf-8", "PowerShell script"),
    "mikrotik": (mikrotik.render, ".rsc", "text/plain; charset=utf-8", "RouterOS script"),
    "networkmanager": (
        networkmanager.render,
        ".nmconnection",
        "text/plain; charset=utf-8",
        "NetworkManager keyfile (network-manager-sstp)",
    ),
    "sstpc": (sstpc.render, ".sh", "text/plain; charset=utf-8", "shell script running sstpc"),
    "certificate": (_certificate, ".crt", "application/x-pem-file", "certificate to trust (PEM)"),
}


def make_profile(config: Config, platform: str, user: str | None = None) -> Profile:
    """The profile for ``platform``. Raises ProfileError (unknown platform, bad user name,
    nothing to derive the server's name from) or CertificateError (unreadable file)."""
    if platform not in PLATFORMS:
        raise ProfileError(f"unknown platform {platform!r} (one of {', '.join(PLATFORMS)})")
    render, suffix, ctype, _ = PLATFORMS[platform]
    user = validate_user(user)
    facts = client_facts(config)
    text = render(facts, user, __version__)
    base = re.sub(r"[^A-Za-z0-9.-]", "-", facts.name)
    return Profile(f"{base}{suffix}", ctype, text)
