"""``sstpd config show`` and ``sstpd profile``: what a configuration implies, printed."""

from __future__ import annotations

import argparse
import sys

from sstpd.cli.common import effective_config
from sstpd.files import write_atomic


def config_show(args: argparse.Namespace) -> int:
    from sstpd.config_view import view_json, view_toml

    config, _ = effective_config(args.config)
    sys.stdout.write(view_json(config) if args.json else view_toml(config))
    return 0


def profile(args: argparse.Namespace) -> int:
    from sstpd.profiles import make_profile

    config, _ = effective_config(args.config)
    made = make_profile(config, args.platform, args.user)
    data = made.text.encode()
    if args.out:
        write_atomic(args.out, data, 0o644)
        print(f"{args.platform} profile written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
