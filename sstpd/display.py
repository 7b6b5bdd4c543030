"""How counters are shown to people: byte counts and durations.

Shared by ``sstpctl`` (``sstpd.ctl``) and the status page (``sstpd.status.page``), so
that neither imports the other.
"""

from __future__ import annotations

__all__ = ["format_bytes", "format_duration"]


def format_bytes(n: int) -> str:
    """``1023 B``, ``1.0 KiB`` ... ``TiB`` (binary units, one decimal)."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``H:MM:SS``, with ``Nd`` in front from one day on."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text
