"""The ``sstpd`` command line (``sstpd.cli:main``, ``python -m sstpd``); see command.py."""

from sstpd.cli.command import main

__all__ = ["main"]
