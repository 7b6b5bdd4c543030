"""The ``[server]``, ``[auth]``, ``[radius]``, ``[acme]`` and ``[limits]`` sections:
one parser each, from a ``Section`` to its dataclass. Checks that need another section
take it as an argument (``[radius]`` the auth backends, ``[acme]`` the server)."""

from __future__ import annotations

import re
import ssl
from ipaddress import IPv4Address, ip_address

from sstpd.config.model import (
    ACME_CHALLENGES,
    ACME_KEY_TYPES,
    AUTH_BACKENDS,
    AUTH_METHODS,
    DEFAULT_CIPHERS,
    HASH_PROTOCOLS,
    MAX_RETRIES,
    MAX_SESSIONS_MAX,
    MAX_WORKERS,
    MESSAGE_AUTHENTICATOR_MODES,
    SESSION_BUFFER_MAX,
    SESSION_BUFFER_MIN,
    SESSION_LIMIT_ACTIONS,
    TIMEOUT_MAX,
    TLS_TRANSPORTS,
    TLS_VERSIONS,
    AcmeConfig,
    AuthConfig,
    LimitsConfig,
    RadiusConfig,
    RadiusServer,
    ServerConfig,
)
from sstpd.config.reader import Section, suggest, toml_type
from sstpd.errors import ConfigError
from sstpd.files import read_text


def _valid_ciphers(ciphers: str) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers(ciphers)
    except (ssl.SSLError, ValueError):
        return False
    return True


def parse_server(s: Section) -> ServerConfig:
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
        tls_transport=s.choice("tls_transport", d.tls_transport, TLS_TRANSPORTS),
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


def _host_name(s: Section, key: str) -> str:
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


def _host_port(s: Section, key: str) -> tuple[str, int] | None:
    """ "host:port" or "[v6]:port" -> (host, port); "" -> None."""
    text = s.string(key, "")
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise s.error(key, f'{text!r} is not HOST:PORT (e.g. "127.0.0.1:8080")')
    return host, int(port)


def parse_auth(s: Section) -> AuthConfig:
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


def _radius_servers(s: Section, key: str, default_port: int) -> tuple[RadiusServer, ...]:
    if not s.has(key):
        return ()
    items = s.table[key]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise s.error(key, f"expected [[{s.name}.{key}]] tables, got {toml_type(items)}")
    out = []
    for n, item in enumerate(items):
        sub = Section(s.src, f"{s.name}.{key}", item)
        sub.nth = n
        for k in item:
            if k not in _SERVER_KEYS:
                raise sub.error(k, f"unknown key '{k}'{suggest(k, list(_SERVER_KEYS))}")
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


def parse_radius(s: Section, auth: AuthConfig) -> RadiusConfig:
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


def parse_acme(s: Section, server: ServerConfig) -> AcmeConfig:
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


def parse_limits(s: Section) -> LimitsConfig:
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
