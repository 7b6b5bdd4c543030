"""The known keys are the sections' dataclass fields (``sstpd.config.load``): every one of
them is read by its section's parser, none is accepted and then ignored."""

from __future__ import annotations

import pytest

from sstpd.config import ConfigError, parse_config
from sstpd.config.load import _SCHEMA

KEYS = [(section, key) for section, keys in _SCHEMA.items() for key in keys]


def test_every_section_has_keys() -> None:
    assert set(_SCHEMA) == {"server", "tunnel", "auth", "radius", "limits", "log", "acme"}
    assert ("radius", "server") in KEYS and ("radius", "servers") not in KEYS


@pytest.mark.parametrize(("section", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_every_known_key_is_checked_by_its_parser(section: str, key: str) -> None:
    # no key of ours takes a table: a parser that reads the key rejects it, naming the key
    with pytest.raises(ConfigError) as e:
        parse_config(f"[{section}]\n{key} = {{ bogus = 1 }}\n")
    assert e.value.key == f"{section}.{key}"
    assert e.value.line == 2
