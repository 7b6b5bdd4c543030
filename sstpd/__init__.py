"""sstpd: an SSTP VPN server with PPP negotiated in userspace over one TUN device."""

__version__ = "0.1.0"
__all__ = ["__version__"]
