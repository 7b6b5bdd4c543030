"""What the configuration means for the next session, derived once.

``RuntimeSettings.from_config`` is the one place that turns a ``Config`` into the values
new sessions are built with: the crypto-binding hashes and the mask of hash protocols
offered, the PPP server options, the DHCPINFORM answer (``[tunnel] routes, domain, dns``),
the failed-login throttle, the SSTP timers. Start and
reload both call it; a session keeps the settings it was created with (a reload replaces
the object, it never changes one).
"""

from __future__ import annotations

from dataclasses import dataclass

from sstpd.aio.tls import binding_hashes
from sstpd.config import Config
from sstpd.proto.dhcp import InformSettings
from sstpd.proto.guard import ThrottleConfig
from sstpd.proto.ppp.link.events import PppServerConfig
from sstpd.proto.session import Ipv6Settings
from sstpd.proto.sstp.connection import Timeouts
from sstpd.proto.sstp.constants import HashProtocol


@dataclass(frozen=True, eq=False)
class RuntimeSettings:
    config: Config
    cert_hashes: dict[HashProtocol, bytes]
    hash_mask: int
    ppp: PppServerConfig
    dhcp: InformSettings
    throttle: ThrottleConfig
    timeouts: Timeouts
    handshake_timeout: float  # TCP accept to tunnel open (``server.handshake_timeout``)
    ipv6: Ipv6Settings | None  # None: IPv4 only (no ``tunnel.ipv6_pool``)

    @classmethod
    def from_config(cls, config: Config) -> RuntimeSettings:
        """Reads the certificate (for its hashes): raises what ``binding_hashes`` raises."""
        hashes = binding_hashes(config)
        sc, tc = config.server, config.tunnel
        return cls(
            config=config,
            cert_hashes=hashes,
            hash_mask=hash_mask(sc.hash_protocols, hashes),
            ppp=PppServerConfig(
                local_address=tc.address,
                auth_methods=tuple(config.auth.methods),
                dns=tuple(tc.dns),
                nbns=tuple(tc.nbns),
                mru=tc.mtu,
                auth_retries=config.auth.retries,
            ),
            dhcp=InformSettings(domain=tc.domain, dns=tuple(tc.dns), routes=tuple(tc.routes)),
            throttle=throttle_config(config),
            timeouts=Timeouts(http=sc.handshake_timeout, hello=sc.hello_interval),
            handshake_timeout=sc.handshake_timeout,
            ipv6=None
            if tc.ipv6_pool is None
            else Ipv6Settings(address=tc.ipv6_address, dns=tuple(tc.ipv6_dns), mtu=tc.mtu),
        )

    def mask_for(self, hashes: dict[HashProtocol, bytes]) -> int:
        """The hash-protocol mask for a connection that took ``hashes`` at accept (a reload
        in between may have changed the certificate, not the protocols offered)."""
        if hashes is self.cert_hashes:
            return self.hash_mask
        return hash_mask(self.config.server.hash_protocols, hashes)


def hash_mask(protocols: tuple[str, ...], hashes: dict[HashProtocol, bytes]) -> int:
    """The configured hash protocols (``server.hash_protocols``) we have a hash for."""
    mask = 0
    for name in protocols:
        proto = HashProtocol.SHA256 if name == "sha256" else HashProtocol.SHA1
        if proto in hashes:
            mask |= proto
    return mask


def throttle_config(config: Config) -> ThrottleConfig:
    """The failed-login throttle of ``[limits]`` (also the ``server.workers`` supervisor's)."""
    lc = config.limits
    return ThrottleConfig(
        delay=lc.auth_fail_delay,
        max_delay=lc.auth_fail_max_delay,
        window=lc.auth_fail_window,
        block_after=lc.auth_fail_block_after,
        block_time=lc.auth_fail_block_time,
    )
