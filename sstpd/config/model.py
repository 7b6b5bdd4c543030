"""The configuration's frozen dataclasses, their defaults and the limits of the values.

Each class is one section of the TOML file; its docstring documents the keys. Only the
parsers (``sstpd.config.load``) build them from a file, after every check has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

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
TLS_TRANSPORTS = ("sstpd", "event-loop")  # server.tls_transport: aio.tlsstream, or the loop's
ACME_CHALLENGES = ("tls-alpn-01", "http-01")
ACME_KEY_TYPES = ("ec", "rsa")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

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
    tls_transport: str = "sstpd"
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
    never handed to a client, nor is a ``dns``/``nbns`` server inside the pool
    (``reserved_addresses``; taken when the pool is built at start, so a reload that
    moves a server into the pool takes effect at the next restart). ``dns``/``nbns``
    hold at most two servers each.

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
    brought at least ``sstpd.aio.moderation.ENGAGE_BYTES`` of large tunnel packets), its socket
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

    def reserved_addresses(self) -> tuple[IPv4Address, ...]:
        """Pool addresses never handed to a client: the server's own tunnel address, and
        every DNS or NBNS server address inside the pool (a client given one would stand
        in for that server for every other client)."""
        servers = dict.fromkeys(a for a in (*self.dns, *self.nbns) if a in self.pool)
        servers.pop(self.address, None)
        return (self.address, *servers)


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
