"""The TOML configuration file, read once and validated up front.

``load_config(path)`` turns ``/etc/sstpd/sstpd.toml`` into a frozen :class:`Config`.
Every problem is reported as a :class:`~sstpd.errors.ConfigError` naming the file, the
line and the dotted key, for example::

    /etc/sstpd/sstpd.toml:12: tunnel.pool: 10.0.0.0/33 is not an IPv4 network

``tomllib`` reports the position of syntax errors only; for a value that parses but is
wrong, the line is found by scanning the text for the ``[section]`` header and the
``key =`` line below it (:func:`_locate`). Unknown sections and keys are errors, with a
"did you mean" hint when the name is close to a known one: a typo must never silently
fall back to a default.

All keys are optional; the defaults are the ones documented in the class docstrings.
Relative paths are resolved against the directory of the configuration file.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, TypeVar

from sstpd.errors import ConfigError
from sstpd.files import read_text
from sstpd.proto.dhcp import encode_classless_routes

__all__ = [
    "DEFAULT_CIPHERS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIRECTORY",
    "AcmeConfig",
    "AuthConfig",
    "Config",
    "LimitsConfig",
    "LogConfig",
    "RadiusConfig",
    "RadiusServer",
    "ServerConfig",
    "TunnelConfig",
    "default_config",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = "/etc/sstpd/sstpd.toml"
DEFAULT_STATE_DIRECTORY = "/var/lib/sstpd"

# The TLS 1.2 cipher list (TLS 1.3 suites are configured separately by OpenSSL and are
# all acceptable). Why these and in this order:
#
# * Windows 10/11's SSTP client (Schannel) offers ECDHE with AES-GCM first, for both
#   RSA and ECDSA certificates: the four ECDHE-*-AES*-GCM suites cover it with forward
#   secrecy. CHACHA20 is there for other clients (sstpc with a recent OpenSSL).
# * MikroTik RouterOS names its SSTP ciphers "aes256-sha" and "aes256-gcm-sha384" and,
#   with ``pfs=no`` (the default on many versions), offers them with plain RSA key
#   exchange: AES256-GCM-SHA384 and AES256-SHA. With ``pfs=yes`` it uses the ECDHE
#   variants, hence ECDHE-RSA-AES256-SHA. Python's default server context (OpenSSL's
#   "secure" list) contains none of the RSA-key-exchange suites, so MikroTik clients
#   with pfs=no fail the handshake without them.
#
# Forward-secret suites come first; the I/O layer sets OP_CIPHER_SERVER_PREFERENCE so a
# client offering both gets ECDHE. No CBC suite other than the two MikroTik needs, no
# 3DES/RC4/NULL/anonymous suite. Set ``server.ciphers`` to drop the RSA-key-exchange
# suites when no MikroTik client with pfs=no is to be served.
DEFAULT_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES256-SHA",
        "AES256-GCM-SHA384",
        "AES256-SHA",
    ]
)

HASH_PROTOCOLS = ("sha256", "sha1")
AUTH_METHODS = ("eap-mschapv2", "mschapv2", "pap")
AUTH_BACKENDS = ("users", "radius")
MESSAGE_AUTHENTICATOR_MODES = ("yes", "auto", "no")
LOG_LEVELS = ("debug", "info", "warning", "error")
SESSION_LIMIT_ACTIONS = ("deny", "replace")
TLS_VERSIONS = ("1.2", "1.3")
ACME_CHALLENGES = ("tls-alpn-01", "http-01")
ACME_KEY_TYPES = ("ec", "rsa")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
_DNS_NAME_RE = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)

# Limits of the values (inclusive).
MTU_MIN, MTU_MAX = 576, 4087  # 4087: largest PPP payload fitting a 4095-byte SSTP packet
IPV6_MIN_MTU = 1280  # RFC 8200 §5
MAX_RETRIES = 5
MAX_DNS_SERVERS = 2  # IPCP carries a primary and a secondary server only (RFC 1877)
MAX_IPV6_DNS_SERVERS = 3  # RDNSS: RFC 8106 §5.3.1 asks hosts to keep at least three
MAX_OPTION_BYTES = 255  # one DHCP option (121/249) holds the encoded routes
MAX_DOMAIN = 253
SESSION_BUFFER_MIN, SESSION_BUFFER_MAX = 65536, 1 << 30
MAX_SESSIONS_MAX = 1_000_000
MAX_WORKERS = 64
TIMEOUT_MAX = 86400.0
MODERATION_BYTES_MAX = 1 << 20  # [tunnel] read_moderation_bytes (SO_RCVLOWAT) at most
MODERATION_DELAY_MAX = 0.1  # seconds a streaming client's packets may wait at most
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")
_DEFAULT_LISTEN: tuple[IPv4Address | IPv6Address, ...] = (IPv4Address("0.0.0.0"),)
_DEFAULT_ADDRESS = IPv4Address("10.77.0.1")
_DEFAULT_POOL = IPv4Network("10.77.0.0/24")


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: listeners, TLS and the SSTP-level settings.

    ``cert_hash_sha256``/``cert_hash_sha1`` are the raw digests (None when not set).
    With ``tls = true`` a set hash replaces the one computed from the served leaf
    certificate; with ``tls = false`` (behind a TLS offloader) at least one is required
    and ``hash_protocols`` defaults to the protocols whose hash is given.
    ``ciphers`` is the effective OpenSSL cipher string (``DEFAULT_CIPHERS`` when the file
    leaves it empty). ``chain`` is None when no intermediate chain file is configured.
    ``control_socket`` is the unix socket of ``sstpctl`` and the status app (mode 0660);
    ``control_group`` the group it is given ("" = the daemon's own group).
    ``proxy_protocol``: every connection starts with a PROXY v1/v2 header from a load
    balancer naming the real client. ``web_backend`` ("host:port" or None): where requests
    that are not the SSTP upgrade go, so the port can be shared with a web site.
    ``public_name``/``public_port`` ("" / 0 = derived: the certificate's name, ``port``):
    what clients dial, for the generated client profiles (``sstpd profile``).
    ``ca_certificate`` (None = found automatically): the certificate clients must trust.
    ``workers``: processes sharing the port (0 = one per CPU; 1 = a single process);
    see ``sstpd.aio.workers``.
    """

    listen: tuple[IPv4Address | IPv6Address, ...] = _DEFAULT_LISTEN
    port: int = 443
    tls: bool = True
    certificate: str = "/etc/sstpd/tls/server.crt"
    key: str = "/etc/sstpd/tls/server.key"
    chain: str | None = None
    cert_hash_sha256: bytes | None = None
    cert_hash_sha1: bytes | None = None
    hash_protocols: tuple[str, ...] = HASH_PROTOCOLS
    tls_min_version: str = "1.2"
    ciphers: str = DEFAULT_CIPHERS
    max_sessions: int = 1000
    handshake_timeout: float = 60.0
    hello_interval: float = 60.0
    state_directory: str = DEFAULT_STATE_DIRECTORY
    control_socket: str = "/run/sstpd/control.sock"
    control_group: str = ""
    proxy_protocol: bool = False
    web_backend: tuple[str, int] | None = None
    public_name: str = ""
    public_port: int = 0
    ca_certificate: str | None = None
    workers: int = 0


@dataclass(frozen=True)
class TunnelConfig:
    """``[tunnel]``: the TUN device and the addresses handed out over IPCP.

    ``address`` is the server's own tunnel address; when it lies inside ``pool`` it is
    never handed to a client. ``dns``/``nbns`` hold at most two servers each.

    IPv6 and split-tunnel routes (validated now; they take effect once the session data
    path is wired to them): ``ipv6_pool`` (None = IPv4 only) is split into one /64 per
    session; ``ipv6_address`` is the server's own IPv6 tunnel address (default: the first
    address of the pool, whose /64 is then never handed out); ``ipv6_dns`` go into the
    Router Advertisement (RDNSS). ``routes`` (IPv4 prefixes reached through the tunnel)
    and ``domain`` (the connection-specific DNS suffix) answer a client's DHCPINFORM.
    ``offload``: open the TUN device with IFF_VNET_HDR and hand the kernel runs of TCP
    segments from one client as one GSO super-packet (``sstpd.proto.gro``). Off by
    default: it pays only when clients send many packets per TLS record (measured in
    docs/PERFORMANCE-NOTES.md, "The TUN offload").
    ``read_moderation_bytes`` / ``read_moderation_delay``: read moderation, the
    userspace form of a NIC's interrupt coalescing. Once a client streams (one read
    brought at least ``sstpd.aio.moderation.ENGAGE_BYTES`` of tunnel packets), its socket
    wakes the daemon only when that many bytes wait or the delay has passed
    (``SO_RCVLOWAT`` and one timer for all sessions): fewer, larger reads. 0 bytes = off.
    """

    interface: str = "sstp0"
    address: IPv4Address = _DEFAULT_ADDRESS
    pool: IPv4Network = _DEFAULT_POOL
    dns: tuple[IPv4Address, ...] = ()
    nbns: tuple[IPv4Address, ...] = ()
    mtu: int = 1400
    ipv6_pool: IPv6Network | None = None
    ipv6_address: IPv6Address | None = None
    ipv6_dns: tuple[IPv6Address, ...] = ()
    routes: tuple[IPv4Network, ...] = ()
    domain: str = ""
    offload: bool = False
    read_moderation_bytes: int = 131072
    read_moderation_delay: float = 0.001


@dataclass(frozen=True)
class AuthConfig:
    """``[auth]``: PPP authentication methods in preference order, users, retries.

    ``max_sessions_per_user`` (0 = no limit) caps the open sessions of one user name;
    ``session_limit_action`` says what a login beyond it does: ``deny`` refuses the new
    session, ``replace`` disconnects the user's oldest session(s) to make room.
    ``backends``: where credentials are checked, in order. ``users`` = the users file,
    ``radius`` = the ``[radius]`` servers. With both, a user listed in the users file is
    decided there and every other user is asked of RADIUS."""

    methods: tuple[str, ...] = AUTH_METHODS
    users_file: str = "/etc/sstpd/users"
    retries: int = 0
    max_sessions_per_user: int = 0
    session_limit_action: str = "deny"
    backends: tuple[str, ...] = ("users",)


@dataclass(frozen=True)
class RadiusServer:
    """One ``[[radius.server]]`` / ``[[radius.accounting_server]]`` / ``[[radius.dae_client]]``.

    ``secret`` is read from ``secret`` or from ``secret_file`` (first line) at load time;
    it is never shown in logs or reload reports."""

    address: str
    port: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class RadiusConfig:
    """``[radius]``: servers in failover order, the NAS identity, timers.

    A server that did not answer ``retries`` + 1 transmissions of ``timeout`` seconds is
    skipped for ``dead_time`` seconds. ``require_message_authenticator``: ``yes`` drops every
    answer without a valid Message-Authenticator (BlastRADIUS); ``auto`` requires it from a
    server once it has sent one; ``no`` checks it only when present. ``interim_interval``
    (seconds, 0 = only when the Access-Accept carries Acct-Interim-Interval).
    ``dae_listen`` ("addr:port", "" = off) receives Disconnect-Requests (RFC 5176) from
    the ``dae_client`` addresses with their secrets."""

    servers: tuple[RadiusServer, ...] = ()
    accounting_servers: tuple[RadiusServer, ...] = ()
    nas_identifier: str = "sstpd"
    nas_ip_address: IPv4Address | None = None
    timeout: float = 3.0
    retries: int = 2
    dead_time: float = 30.0
    require_message_authenticator: str = "yes"
    interim_interval: int = 0
    dae_listen: tuple[str, int] | None = None
    dae_clients: tuple[RadiusServer, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: ``session_buffer`` = bytes of queued output before a session is dropped.

    Connections that have not authenticated yet ("pending": TCP accepted, TLS, HTTP, PPP
    up to a successful login) have budgets of their own and never count against
    ``server.max_sessions``: at most ``pending_total`` at once and ``pending_per_source``
    from one source address; ``setup_timeout`` seconds from TCP accept to a valid SSTP
    HTTP request (TLS handshake included; ``server.handshake_timeout`` is the budget of
    the whole handshake up to the open tunnel).

    Failed logins: the answer to each failure is held ``auth_fail_delay`` seconds,
    doubling with each failure of the same source or user in ``auth_fail_window``
    seconds, up to ``auth_fail_max_delay``; ``auth_fail_block_after`` failures in the
    window (0 = never) block that source address or user name for
    ``auth_fail_block_time`` seconds."""

    session_buffer: int = 1048576
    pending_total: int = 1000
    pending_per_source: int = 64
    setup_timeout: float = 10.0
    auth_fail_delay: float = 1.0
    auth_fail_max_delay: float = 8.0
    auth_fail_window: float = 600.0
    auth_fail_block_after: int = 10
    auth_fail_block_time: float = 900.0


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: ``level`` is one of debug, info, warning, error."""

    level: str = "info"


@dataclass(frozen=True)
class AcmeConfig:
    """``[acme]``: a publicly trusted certificate from an ACME CA (off while ``names`` is
    empty). The daemon writes what it obtains to ``server.certificate``/``server.key``.

    ``directory``: the CA's directory URL (default Let's Encrypt); ``email``: contact
    address given to the CA ("" = none); ``key_type``: of the certificate key;
    ``ca_file``: CA bundle to trust for the ACME server's own HTTPS (private CAs; ""
    = the system store); ``challenge``: ``tls-alpn-01`` (answered on the SSTP listener,
    port 443) or ``http-01`` (answered on ``http_port``, for a TLS offloader in front);
    ``retry_interval``: first wait after a failure, doubled up to a day.
    """

    names: tuple[str, ...] = ()
    directory: str = LETS_ENCRYPT
    email: str = ""
    key_type: str = "ec"
    ca_file: str | None = None
    challenge: str = "tls-alpn-01"
    http_port: int = 80
    retry_interval: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.names)


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with :func:`load_config`, :func:`parse_config`
    or :func:`default_config`; every field has been validated."""

    server: ServerConfig = ServerConfig()
    tunnel: TunnelConfig = TunnelConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    log: LogConfig = LogConfig()
    acme: AcmeConfig = AcmeConfig()
    radius: RadiusConfig = RadiusConfig()


# The known keys of every section, used for the unknown-key check before any value is
# looked at (so that a typo is reported as a typo, not as a missing value).
_SCHEMA: dict[str, tuple[str, ...]] = {
    "server": (
        "listen",
        "port",
        "tls",
        "certificate",
        "key",
        "chain",
        "cert_hash_sha256",
        "cert_hash_sha1",
        "hash_protocols",
        "tls_min_version",
        "ciphers",
        "max_sessions",
        "handshake_timeout",
        "hello_interval",
        "state_directory",
        "control_socket",
        "control_group",
        "proxy_protocol",
        "web_backend",
        "public_name",
        "public_port",
        "ca_certificate",
        "workers",
    ),
    "tunnel": (
        "interface",
        "address",
        "pool",
        "dns",
        "nbns",
        "mtu",
        "ipv6_pool",
        "ipv6_address",
        "ipv6_dns",
        "routes",
        "domain",
        "offload",
        "read_moderation_bytes",
        "read_moderation_delay",
    ),
    "auth": (
        "methods",
        "users_file",
        "retries",
        "backends",
        "max_sessions_per_user",
        "session_limit_action",
    ),
    "radius": (
        "server",
        "accounting_server",
        "dae_client",
        "nas_identifier",
        "nas_ip_address",
        "timeout",
        "retries",
        "dead_time",
        "require_message_authenticator",
        "interim_interval",
        "dae_listen",
    ),
    "limits": (
        "session_buffer",
        "pending_total",
        "pending_per_source",
        "setup_timeout",
        "auth_fail_delay",
        "auth_fail_max_delay",
        "auth_fail_window",
        "auth_fail_block_after",
        "auth_fail_block_time",
    ),
    "log": ("level",),
    "acme": (
        "names",
        "directory",
        "email",
        "key_type",
        "ca_file",
        "challenge",
        "http_port",
        "retry_interval",
    ),
}


def load_config(path: str) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises ConfigError when the file cannot be read or is invalid.
    """
    return parse_config(read_text(path), path)


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate the TOML ``text``; ``path`` names it in errors and anchors relative paths.

    When ``path`` is a pseudo-name such as ``<string>``, relative paths are resolved
    against the current directory. Raises ConfigError, and nothing else, on any input.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reason, line = _split_toml_error(str(e), text)
        raise ConfigError(path, f"TOML syntax error: {reason}", line=line) from None
    base = os.getcwd() if path.startswith("<") else os.path.dirname(os.path.abspath(path))
    return _build(data, _Source(path, text, base))


def default_config(state_directory: str) -> Config:
    """The embedded configuration used when no configuration file exists.

    Listens on 0.0.0.0:443 with the certificate and key at
    ``<state_directory>/tls/server.{crt,key}`` and the users file at
    ``<state_directory>/users``; everything else has its documented default.
    """
    state = os.path.abspath(state_directory)
    data: dict[str, Any] = {
        "server": {
            "state_directory": state,
            "certificate": os.path.join(state, "tls", "server.crt"),
            "key": os.path.join(state, "tls", "server.key"),
        },
        "auth": {"users_file": os.path.join(state, "users")},
    }
    return _build(data, _Source("<default>", "", state))


# ---------------------------------------------------------------------------------------
# Locating a key in the text


_LOC_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]*?)\s*\]\]?\s*(?:#.*)?$")


def _split_toml_error(message: str, text: str) -> tuple[str, int | None]:
    m = _LOC_RE.search(message)
    if m:
        return message[: m.start()], int(m.group(1))
    if message.endswith("(at end of document)"):
        return message[: -len("(at end of document)")].rstrip(), text.count("\n") + 1
    return message, None


def _norm_dotted(name: str) -> str:
    """``"server" . 'port'`` -> ``server.port`` (good enough for headers and keys we own)."""
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def _locate(text: str, section: str | None, key: str | None) -> int | None:
    """The 1-based line defining ``section.key`` (or the section itself when ``key`` is
    None), or None. Understands ``[section]`` + ``key =``, ``section.key =`` at the top
    level and ``section = { ... }``; the last one points at the inline table."""
    target = ".".join(part for part in (section, key) if part)
    current = ""
    for number, line in enumerate(text.split("\n"), 1):
        header = _HEADER_RE.match(line)
        if header:
            current = _norm_dotted(header.group(2))
            if current == target or current.startswith(f"{target}."):
                return number
            continue
        if "=" not in line:
            continue
        left = _norm_dotted(line.split("=", 1)[0])
        full = f"{current}.{left}" if current else left
        if full == target:
            return number
        if key is not None and section is not None and full == section:
            return number  # inline table: section = { key = ... }
        if key is None and full.startswith(f"{section}."):
            return number
    return None


def _locate_nth(text: str, section: str, nth: int, key: str) -> int | None:
    """The line of ``key`` in the ``nth`` ``[[section]]`` table (or of its header)."""
    seen, header_line, inside = -1, None, False
    for number, line in enumerate(text.split("\n"), 1):
        header = _HEADER_RE.match(line)
        if header:
            inside = header.group(1) == "[[" and _norm_dotted(header.group(2)) == section
            if inside:
                seen += 1
                if seen == nth:
                    header_line = number
            elif seen >= nth and header_line is not None:
                break
            continue
        if inside and seen == nth and "=" in line and _norm_dotted(line.split("=", 1)[0]) == key:
            return number
    return header_line


@dataclass(frozen=True)
class _Source:
    file: str
    text: str
    base: str

    def error(self, section: str | None, key: str | None, reason: str) -> ConfigError:
        line = _locate(self.text, section, key)
        if line is None and section is not None and key is not None:
            line = _locate(self.text, section, None)
        if section is None:
            dotted = key
        elif key is None:
            dotted = section
        else:
            dotted = f"{section}.{key}"
        return ConfigError(self.file, reason, line=line, key=dotted)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------------------
# Typed readers of one section

_T = TypeVar("_T")


class _Section:
    def __init__(self, src: _Source, name: str, table: Mapping[str, Any]) -> None:
        self.src = src
        self.name = name
        self.table = table
        self.nth: int | None = None  # index in an array of tables ([[name]])

    def error(self, key: str, reason: str) -> ConfigError:
        if self.nth is not None:
            line = _locate_nth(self.src.text, self.name, self.nth, key)
            return ConfigError(
                self.src.file, reason, line=line, key=f"{self.name}[{self.nth}].{key}"
            )
        return self.src.error(self.name, key, reason)

    def has(self, key: str) -> bool:
        return key in self.table

    def _get(self, key: str, default: _T, kind: type | tuple[type, ...], what: str) -> _T:
        if key not in self.table:
            return default
        value = self.table[key]
        # bool is an int subclass: never accept true/false where a number is expected.
        if isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"expected {what}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {what}, got {_toml_type(value)}")
        return value  # type: ignore[return-value]

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, bool, "true or false")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key, default, int, "an integer")
        if not low <= value <= high:
            raise self.error(key, f"{value} is out of range {low}-{high}")
        return value

    def number(self, key: str, default: float, high: float, *, zero_ok: bool = False) -> float:
        value = float(self._get(key, default, (int, float), "a number of seconds"))
        if zero_ok and value == 0:
            return value
        if not (math.isfinite(value) and 0 < value <= high):
            least = "at least 0" if zero_ok else "greater than 0"
            raise self.error(key, f"{value} must be {least} and at most {high:g}")
        return value

    def string(self, key: str, default: str) -> str:
        value = self._get(key, default, str, "a string")
        if "\0" in value:
            raise self.error(key, "contains a NUL character")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def path(self, key: str, default: str, *, empty_ok: bool = False) -> str:
        value = self.string(key, default)
        if not value:
            if empty_ok:
                return ""
            raise self.error(key, "must not be empty")
        return os.path.normpath(os.path.join(self.src.base, os.path.expanduser(value)))

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of strings, got {_toml_type(value)}")
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"expected an array of strings, found {_toml_type(item)}")
        if len(set(value)) != len(value):
            raise self.error(key, "contains duplicates")
        return tuple(value)

    def subset(
        self, key: str, default: tuple[str, ...], choices: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = self.strings(key, default)
        if not value:
            raise self.error(key, "must not be empty")
        for item in value:
            if item not in choices:
                raise self.error(
                    key,
                    f"{item!r} is not one of {', '.join(choices)}{_suggest(item, list(choices))}",
                )
        return value

    def parsed_list(
        self, key: str, default: tuple[_T, ...], parse: Callable[[str], _T], what: str
    ) -> tuple[_T, ...]:
        if not self.has(key):
            return default
        result = []
        for item in self.strings(key, ()):
            try:
                result.append(parse(item))
            except ValueError:
                raise self.error(key, f"{item!r} is not {what}") from None
        return tuple(result)

    def ipv4(self, key: str, default: IPv4Address) -> IPv4Address:
        if not self.has(key):
            return default
        value = self.string(key, "")
        try:
            return IPv4Address(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not an IPv4 address") from None

    def cert_hash(self, key: str, size: int) -> bytes | None:
        value = self.string(key, "").replace(":", "")
        if not value:
            return None
        if not _HEX_RE.fullmatch(value) or len(value) != 2 * size:
            raise self.error(
                key, f"must be {size} bytes in hex ({2 * size} hex digits, colons allowed)"
            )
        return bytes.fromhex(value)


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _valid_ciphers(ciphers: str) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers(ciphers)
    except (ssl.SSLError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------
# The whole file


def _check_names(data: Mapping[str, Any], src: _Source) -> None:
    sections = list(_SCHEMA)
    for name, table in data.items():
        if name not in _SCHEMA:
            # A key that belongs in a section but was written at the top level.
            owners = [s for s, keys in _SCHEMA.items() if name in keys]
            if owners and not isinstance(table, dict):
                hint = f" (did you mean to put it under [{owners[0]}]?)"
            else:
                hint = _suggest(name, sections)
            kind = "section" if isinstance(table, dict) else "key"
            raise src.error(None, name, f"unknown {kind} '{name}'{hint}")
        if not isinstance(table, dict):
            raise src.error(None, name, f"expected a table [{name}], got {_toml_type(table)}")
        known = list(_SCHEMA[name])
        for key in table:
            if key not in known:
                raise src.error(name, key, f"unknown key '{key}'{_suggest(key, known)}")


def _build(data: Mapping[str, Any], src: _Source) -> Config:
    _check_names(data, src)
    server = _server(_Section(src, "server", data.get("server", {})))
    tunnel_section = _Section(src, "tunnel", data.get("tunnel", {}))
    tunnel = _tunnel(tunnel_section)
    room = 15 - len(f"w{MAX_WORKERS - 1}")
    if server.workers != 1 and len(tunnel.interface) > room:
        # worker N > 0 owns the TUN device "<interface>wN"
        raise tunnel_section.error(
            "interface",
            f"{tunnel.interface!r} is longer than {room} characters, which leaves no room "
            "for the worker suffix of the other workers' devices (or set server.workers = 1)",
        )
    return Config(
        server=server,
        acme=_acme(_Section(src, "acme", data.get("acme", {})), server),
        tunnel=tunnel,
        auth=(auth := _auth(_Section(src, "auth", data.get("auth", {})))),
        radius=_radius(_Section(src, "radius", data.get("radius", {})), auth),
        limits=_limits(_Section(src, "limits", data.get("limits", {}))),
        log=LogConfig(
            level=_Section(src, "log", data.get("log", {})).choice(
                "level", LogConfig.level, LOG_LEVELS
            )
        ),
    )


def _server(s: _Section) -> ServerConfig:
    d = ServerConfig()
    listen = s.parsed_list("listen", d.listen, ip_address, "an IPv4 or IPv6 address")
    if not listen:
        raise s.error("listen", "must list at least one address")
    if len(set(listen)) != len(listen):
        raise s.error("listen", "contains duplicates")
    tls = s.boolean("tls", d.tls)
    sha256 = s.cert_hash("cert_hash_sha256", 32)
    sha1 = s.cert_hash("cert_hash_sha1", 20)
    if tls or s.has("hash_protocols"):
        protocols = s.subset("hash_protocols", d.hash_protocols, HASH_PROTOCOLS)
    else:
        # Behind an offloader only the hashes we were given can be sent; offer those.
        protocols = tuple(p for p, h in (("sha256", sha256), ("sha1", sha1)) if h is not None)
    if not tls:
        if sha256 is None and sha1 is None:
            raise s.error(
                "tls",
                "tls = false needs cert_hash_sha256 or cert_hash_sha1 "
                "(the hash of the certificate the TLS offloader presents)",
            )
        for protocol, value in (("sha256", sha256), ("sha1", sha1)):
            if protocol in protocols and value is None:
                raise s.error(
                    "hash_protocols",
                    f"{protocol} is offered but cert_hash_{protocol} is not set (needed "
                    "with tls = false)",
                )
    ciphers = s.string("ciphers", "") or DEFAULT_CIPHERS
    if not _valid_ciphers(ciphers):
        raise s.error("ciphers", f"{ciphers!r} selects no cipher OpenSSL knows")
    chain = s.path("chain", "", empty_ok=True)
    return ServerConfig(
        listen=listen,
        port=s.integer("port", d.port, 1, 65535),
        tls=tls,
        certificate=s.path("certificate", d.certificate),
        key=s.path("key", d.key),
        chain=chain or None,
        cert_hash_sha256=sha256,
        cert_hash_sha1=sha1,
        hash_protocols=protocols,
        tls_min_version=s.choice("tls_min_version", d.tls_min_version, TLS_VERSIONS),
        ciphers=ciphers,
        max_sessions=s.integer("max_sessions", d.max_sessions, 1, MAX_SESSIONS_MAX),
        handshake_timeout=s.number("handshake_timeout", d.handshake_timeout, TIMEOUT_MAX),
        hello_interval=s.number("hello_interval", d.hello_interval, TIMEOUT_MAX),
        state_directory=s.path("state_directory", d.state_directory),
        control_socket=s.path("control_socket", d.control_socket),
        control_group=s.string("control_group", d.control_group),
        proxy_protocol=s.boolean("proxy_protocol", d.proxy_protocol),
        web_backend=_host_port(s, "web_backend"),
        public_name=_host_name(s, "public_name"),
        public_port=s.integer("public_port", d.public_port, 0, 65535),
        ca_certificate=s.path("ca_certificate", "", empty_ok=True) or None,
        workers=s.integer("workers", d.workers, 0, MAX_WORKERS),
    )


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def _host_name(s: _Section, key: str) -> str:
    """A DNS name or an IP address ("" = not set)."""
    text = s.string(key, "")
    if not text:
        return ""
    try:
        return str(ip_address(text))
    except ValueError:
        pass
    if not _DNS_NAME_RE.fullmatch(text):
        raise s.error(key, f"{text!r} is neither a DNS name nor an IP address")
    return text.rstrip(".")


def _host_port(s: _Section, key: str) -> tuple[str, int] | None:
    """ "host:port" or "[v6]:port" -> (host, port); "" -> None."""
    text = s.string(key, "")
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise s.error(key, f'{text!r} is not HOST:PORT (e.g. "127.0.0.1:8080")')
    return host, int(port)


def _tunnel(s: _Section) -> TunnelConfig:
    d = TunnelConfig()
    interface = s.string("interface", d.interface)
    if not _IFNAME_RE.fullmatch(interface) or interface in (".", ".."):
        raise s.error(
            "interface",
            f"{interface!r} is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . -)",
        )
    address = s.ipv4("address", d.address)
    pool = d.pool
    if s.has("pool"):
        value = s.string("pool", "")
        try:
            pool = IPv4Network(value, strict=True)
        except ValueError as e:
            reason = (
                f"{value} has host bits set"
                if "host bits" in str(e)
                else f"{value} is not an IPv4 network"
            )
            raise s.error("pool", reason) from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise s.error("address", f"{address} cannot be a tunnel address")
    ends = (pool.network_address, pool.broadcast_address) if pool.prefixlen <= 30 else ()
    if address in ends:
        raise s.error("address", f"{address} is the network or broadcast address of {pool}")
    hosts = pool.num_addresses - (2 if pool.prefixlen <= 30 else 0)
    if address in pool:
        hosts -= 1
    if hosts < 1:
        raise s.error(
            "pool" if s.has("pool") else "address", f"{pool} has no usable client address"
        )
    dns = s.parsed_list("dns", d.dns, IPv4Address, "an IPv4 address")
    nbns = s.parsed_list("nbns", d.nbns, IPv4Address, "an IPv4 address")
    for key, servers in (("dns", dns), ("nbns", nbns)):
        if len(servers) > MAX_DNS_SERVERS:
            raise s.error(key, f"at most {MAX_DNS_SERVERS} servers can be pushed over IPCP")
    ipv6_pool, ipv6_address, ipv6_dns = _tunnel_ipv6(s)
    mtu = s.integer("mtu", d.mtu, MTU_MIN, MTU_MAX)
    if ipv6_pool is not None and mtu < IPV6_MIN_MTU:
        # the kernel turns IPv6 off on a device with a smaller MTU
        raise s.error("mtu", f"{mtu} is below {IPV6_MIN_MTU}, the IPv6 minimum (ipv6_pool is set)")
    return TunnelConfig(
        interface=interface,
        address=address,
        pool=pool,
        dns=dns,
        nbns=nbns,
        mtu=mtu,
        ipv6_pool=ipv6_pool,
        ipv6_address=ipv6_address,
        ipv6_dns=ipv6_dns,
        routes=_routes(s),
        domain=_domain(s),
        offload=s.boolean("offload", d.offload),
        read_moderation_bytes=s.integer(
            "read_moderation_bytes", d.read_moderation_bytes, 0, MODERATION_BYTES_MAX
        ),
        read_moderation_delay=s.number(
            "read_moderation_delay", d.read_moderation_delay, MODERATION_DELAY_MAX
        ),
    )


def _tunnel_ipv6(
    s: _Section,
) -> tuple[IPv6Network | None, IPv6Address | None, tuple[IPv6Address, ...]]:
    pool: IPv6Network | None = None
    if value := s.string("ipv6_pool", ""):  # "" = IPv6 off, as when the key is absent
        try:
            pool = IPv6Network(value, strict=True)
        except ValueError as e:
            reason = "has host bits set" if "host bits" in str(e) else "is not an IPv6 network"
            raise s.error("ipv6_pool", f"{value} {reason}") from None
        if pool.prefixlen > 64:
            raise s.error("ipv6_pool", f"{pool} is longer than /64: each client needs a /64")
        if not _routable_v6(pool.network_address):
            raise s.error("ipv6_pool", f"{pool} is not a global or unique-local prefix")
    address: IPv6Address | None = None
    if value := s.string("ipv6_address", ""):
        try:
            address = IPv6Address(value)
        except ValueError:
            raise s.error("ipv6_address", f"{value!r} is not an IPv6 address") from None
        if pool is None:
            raise s.error("ipv6_address", "needs tunnel.ipv6_pool (IPv6 is off without it)")
        if not _routable_v6(address):
            raise s.error("ipv6_address", f"{address} cannot be a tunnel address")
    elif pool is not None:
        address = pool.network_address + 1
    if pool is not None and address is not None and pool.prefixlen == 64 and address in pool:
        key = "ipv6_address" if s.string("ipv6_address", "") else "ipv6_pool"
        raise s.error(key, f"{pool} holds the server's {address}: no /64 is left for clients")
    dns = s.parsed_list("ipv6_dns", (), IPv6Address, "an IPv6 address")
    if dns and pool is None:
        raise s.error("ipv6_dns", "needs tunnel.ipv6_pool (IPv6 is off without it)")
    if len(dns) > MAX_IPV6_DNS_SERVERS:
        raise s.error("ipv6_dns", f"at most {MAX_IPV6_DNS_SERVERS} servers")
    return pool, address, dns


def _routable_v6(address: IPv6Address) -> bool:
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
        or address.ipv4_mapped is not None
    )


def _routes(s: _Section) -> tuple[IPv4Network, ...]:
    routes: list[IPv4Network] = []
    for item in s.strings("routes", ()):
        try:
            network = IPv4Network(item, strict=True)
        except ValueError as e:
            if "host bits" in str(e):
                raise s.error("routes", f"{item} has host bits set") from None
            raise s.error(
                "routes", f"{item!r} is not an IPv4 network (DHCP pushes IPv4 routes only)"
            ) from None
        if network in routes:
            raise s.error("routes", f"{network} is listed twice")
        routes.append(network)
    size = len(encode_classless_routes((r, IPv4Address(0)) for r in routes))
    if size > MAX_OPTION_BYTES:
        raise s.error(
            "routes",
            f"the routes take {size} bytes in DHCP option 121, at most {MAX_OPTION_BYTES} fit "
            "(use fewer or shorter prefixes)",
        )
    return tuple(routes)


def _domain(s: _Section) -> str:
    value = s.string("domain", "")
    name = value[:-1] if value.endswith(".") else value
    if not value:
        return ""
    labels = name.split(".")
    if len(name) > MAX_DOMAIN or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise s.error(
            "domain",
            f"{value!r} is not a DNS domain name (labels of letters, digits and '-', "
            f"at most {MAX_DOMAIN} characters)",
        )
    return name


def _auth(s: _Section) -> AuthConfig:
    d = AuthConfig()
    return AuthConfig(
        methods=s.subset("methods", d.methods, AUTH_METHODS),
        users_file=s.path("users_file", d.users_file),
        retries=s.integer("retries", d.retries, 0, MAX_RETRIES),
        max_sessions_per_user=s.integer(
            "max_sessions_per_user", d.max_sessions_per_user, 0, MAX_SESSIONS_MAX
        ),
        session_limit_action=s.choice(
            "session_limit_action", d.session_limit_action, SESSION_LIMIT_ACTIONS
        ),
        backends=s.subset("backends", d.backends, AUTH_BACKENDS),
    )


_SERVER_KEYS = ("address", "port", "secret", "secret_file")


def _radius_servers(s: _Section, key: str, default_port: int) -> tuple[RadiusServer, ...]:
    if not s.has(key):
        return ()
    items = s.table[key]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise s.error(key, f"expected [[{s.name}.{key}]] tables, got {_toml_type(items)}")
    out = []
    for n, item in enumerate(items):
        sub = _Section(s.src, f"{s.name}.{key}", item)
        sub.nth = n
        for k in item:
            if k not in _SERVER_KEYS:
                raise sub.error(k, f"unknown key '{k}'{_suggest(k, list(_SERVER_KEYS))}")
        address = sub.string("address", "")
        if not address:
            raise sub.error("address", "is required")
        try:
            ip_address(address)
        except ValueError:
            raise sub.error("address", f"{address!r} is not an IP address") from None
        port = sub.integer("port", default_port, 1, 65535)
        if sub.has("secret") == sub.has("secret_file"):
            raise sub.error("secret", "give exactly one of secret and secret_file")
        if sub.has("secret"):
            secret = sub.string("secret", "")
        else:
            path = sub.path("secret_file", "")
            try:
                secret = read_text(path).split("\n", 1)[0].strip()
            except ConfigError as e:
                raise sub.error("secret_file", f"{path}: {e.reason}") from None
        if not secret:
            raise sub.error("secret", "the shared secret must not be empty")
        out.append(RadiusServer(address, port, secret.encode("utf-8")))
    return tuple(out)


def _radius(s: _Section, auth: AuthConfig) -> RadiusConfig:
    d = RadiusConfig()
    servers = _radius_servers(s, "server", 1812)
    if "radius" in auth.backends and not servers:
        raise s.src.error("auth", "backends", "lists radius but no [[radius.server]] is configured")
    nas_ip = s.ipv4("nas_ip_address", IPv4Address(0)) if s.has("nas_ip_address") else None
    dae_listen = _host_port(s, "dae_listen")
    dae_clients = _radius_servers(s, "dae_client", 3799)
    if dae_listen is not None and not dae_clients:
        raise s.error("dae_listen", "needs at least one [[radius.dae_client]]")
    return RadiusConfig(
        servers=servers,
        accounting_servers=_radius_servers(s, "accounting_server", 1813),
        nas_identifier=s.string("nas_identifier", d.nas_identifier),
        nas_ip_address=nas_ip,
        timeout=s.number("timeout", d.timeout, 60.0),
        retries=s.integer("retries", d.retries, 0, 10),
        dead_time=s.number("dead_time", d.dead_time, TIMEOUT_MAX),
        require_message_authenticator=s.choice(
            "require_message_authenticator",
            d.require_message_authenticator,
            MESSAGE_AUTHENTICATOR_MODES,
        ),
        interim_interval=s.integer("interim_interval", d.interim_interval, 0, 86400),
        dae_listen=dae_listen,
        dae_clients=dae_clients,
    )


def _acme(s: _Section, server: ServerConfig) -> AcmeConfig:
    d = AcmeConfig()
    names = tuple(n.lower().rstrip(".") for n in s.strings("names", d.names))
    for name in names:
        if not _DNS_NAME_RE.fullmatch(name):
            raise s.error("names", f"{name!r} is not a DNS name (wildcards need DNS-01)")
    if len(set(names)) != len(names):
        raise s.error("names", "contains duplicates")
    directory = s.string("directory", d.directory)
    if not directory.startswith(("https://", "http://")):
        raise s.error("directory", f"{directory!r} is not an http(s) URL")
    email = s.string("email", d.email)
    if email and ("@" not in email or any(c.isspace() for c in email)):
        raise s.error("email", f"{email!r} is not an e-mail address")
    challenge = s.choice("challenge", d.challenge, ACME_CHALLENGES)
    if names and challenge == "tls-alpn-01" and not server.tls:
        raise s.error(
            "challenge",
            "tls-alpn-01 is answered on the TLS listener, but server.tls = false "
            "(behind a TLS offloader use http-01)",
        )
    if names and server.chain:
        raise s.error(
            "names",
            "with ACME the daemon writes the whole chain to server.certificate: "
            "remove server.chain",
        )
    ca_file = s.path("ca_file", "", empty_ok=True)
    return AcmeConfig(
        names=names,
        directory=directory,
        email=email,
        key_type=s.choice("key_type", d.key_type, ACME_KEY_TYPES),
        ca_file=ca_file or None,
        challenge=challenge,
        http_port=s.integer("http_port", d.http_port, 1, 65535),
        retry_interval=s.number("retry_interval", d.retry_interval, TIMEOUT_MAX),
    )


def _limits(s: _Section) -> LimitsConfig:
    d = LimitsConfig()
    limits = LimitsConfig(
        session_buffer=s.integer(
            "session_buffer", d.session_buffer, SESSION_BUFFER_MIN, SESSION_BUFFER_MAX
        ),
        pending_total=s.integer("pending_total", d.pending_total, 1, MAX_SESSIONS_MAX),
        pending_per_source=s.integer(
            "pending_per_source", d.pending_per_source, 1, MAX_SESSIONS_MAX
        ),
        setup_timeout=s.number("setup_timeout", d.setup_timeout, TIMEOUT_MAX),
        auth_fail_delay=s.number("auth_fail_delay", d.auth_fail_delay, 60.0, zero_ok=True),
        auth_fail_max_delay=s.number(
            "auth_fail_max_delay", d.auth_fail_max_delay, 60.0, zero_ok=True
        ),
        auth_fail_window=s.number("auth_fail_window", d.auth_fail_window, TIMEOUT_MAX),
        auth_fail_block_after=s.integer(
            "auth_fail_block_after", d.auth_fail_block_after, 0, 1_000_000
        ),
        auth_fail_block_time=s.number("auth_fail_block_time", d.auth_fail_block_time, TIMEOUT_MAX),
    )
    if limits.pending_per_source > limits.pending_total:
        raise s.error(
            "pending_per_source",
            f"{limits.pending_per_source} is more than pending_total ({limits.pending_total})",
        )
    if limits.auth_fail_max_delay < limits.auth_fail_delay:
        raise s.error(
            "auth_fail_max_delay",
            f"{limits.auth_fail_max_delay:g} is less than auth_fail_delay "
            f"({limits.auth_fail_delay:g})",
        )
    return limits
