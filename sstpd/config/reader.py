"""Reading TOML values with file/line error reporting: what every section parser uses.

``tomllib`` reports the position of syntax errors only; for a value that parses but is
wrong, the line is found by scanning the text for the ``[section]`` header and the
``key =`` line below it (``_locate``). ``Source`` is the file being read, ``Section``
one table of it with typed getters that raise ``ConfigError`` naming file, line and key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, TypeVar

from sstpd.errors import ConfigError

# ---------------------------------------------------------------------------------------
# Locating a key in the text


_LOC_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]*?)\s*\]\]?\s*(?:#.*)?$")


def split_toml_error(message: str, text: str) -> tuple[str, int | None]:
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
class Source:
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


def suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------------------
# Typed readers of one section

_HEX_RE = re.compile(r"[0-9A-Fa-f]*")

_T = TypeVar("_T")


class Section:
    def __init__(self, src: Source, name: str, table: Mapping[str, Any]) -> None:
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
            raise self.error(key, f"expected {what}, got {toml_type(value)}")
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
            raise self.error(key, f"expected an array of strings, got {toml_type(value)}")
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"expected an array of strings, found {toml_type(item)}")
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
                    f"{item!r} is not one of {', '.join(choices)}{suggest(item, list(choices))}",
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


def toml_type(value: object) -> str:
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
