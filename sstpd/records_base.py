"""The reader and writer every control-answer record shares (``sstpd.records``).

``_Record`` is a frozen dataclass whose fields are its JSON keys: ``to_json()`` writes
them, ``from_json()`` reads them back checked against the field types (``_value``: the few
JSON shapes records use, nested records included). Reading is tolerant in one direction
only, as ``sstpd.records`` says: unknown keys are ignored, keys with a default may be
missing; a missing key without a default, or a value of the wrong JSON type, raises
``RecordError`` naming the key.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self

from sstpd.errors import SstpdError

__all__ = ["Json", "RecordError"]

Json = dict[str, Any]


_SCALARS = frozenset({str, int, float, bool, type(None)})


class RecordError(SstpdError):
    """A control answer that does not have the shape of its record."""


def _value(where: str, hint: object, value: object) -> object:
    """``value`` checked against the field's type (the few JSON shapes records use)."""
    if (hint is str or hint is int) and type(value) is hint:  # most fields: no more to do
        return value
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and len(args) == 2 and type(None) in args:
        if value is None:
            return None
        hint = args[0] if args[1] is type(None) else args[1]
    ok: bool
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif hint is str:
        ok = isinstance(value, str)
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        ok = isinstance(value, list | tuple)
        if ok:  # each item as the item type says
            item = typing.get_args(hint)[0]
            seq: list[object] | tuple[object, ...] = value  # type: ignore[assignment]
            return tuple(_value(f"{where}[{i}]", item, v) for i, v in enumerate(seq))
    elif isinstance(hint, type) and issubclass(hint, _Record):  # a nested record
        try:
            return hint.from_json(value)
        except RecordError as exc:  # where in the answer: "CertRecord.workers[1]: ..."
            raise RecordError(f"{where}: {exc}") from None
    elif hint == dict[str, int]:
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in value.items()
        )
        value = dict(value) if ok else value  # type: ignore[call-overload]
    else:  # a field type this reader does not know: a bug in this module
        raise TypeError(f"{where}: no reader for {hint!r}")
    if not ok:
        what = getattr(hint, "__name__", str(hint))
        raise RecordError(f"{where}: {type(value).__name__} {value!r:.40} is not {what}")
    return value


def _json(v: object) -> object:
    if type(v) in _SCALARS:
        return v
    if isinstance(v, _Record):
        return v.to_json()
    if isinstance(v, tuple):
        return [_json(x) for x in v]
    return dict(v) if isinstance(v, dict) else v


@dataclass(frozen=True, kw_only=True)
class _Record:
    """Fields of scalar JSON types; subclasses list nested records in ``NESTED``."""

    NESTED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _read(cls, obj: object, **nested: Any) -> Self:
        if not isinstance(obj, Mapping):
            raise RecordError(f"{cls.__name__}: not a JSON object")
        kwargs: dict[str, Any] = dict(nested)
        for name, where, hint, required in _plan(cls).read:
            if name not in obj:
                if required:
                    raise RecordError(f"{cls.__name__}: no {name!r}")
                continue
            kwargs[name] = _value(where, hint, obj[name])
        return cls(**kwargs)

    def _write(self) -> Json:
        return {name: _json(getattr(self, name)) for name in _plan(type(self)).written}

    @classmethod
    def from_json(cls, obj: object) -> Self:
        return cls._read(obj)

    def to_json(self) -> Json:
        return self._write()


@dataclass(frozen=True)
class _Plan:
    """A record class's fields as its reader and writer walk them, worked out once per
    class: ``typing.get_type_hints`` evaluates every annotation anew on each call, which
    made reading a ``sessions`` answer of 10,000 rows take seconds."""

    read: tuple[tuple[str, str, object, bool], ...]  # name, "Class.name", hint, required
    written: tuple[str, ...]


_PLANS: dict[type[_Record], _Plan] = {}


def _plan(cls: type[_Record]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        own = [f for f in fields(cls) if f.name not in cls.NESTED]
        plan = _Plan(
            read=tuple(
                (
                    f.name,
                    f"{cls.__name__}.{f.name}",
                    hints[f.name],
                    f.default is MISSING and f.default_factory is MISSING,
                )
                for f in own
            ),
            written=tuple(f.name for f in own),
        )
        _PLANS[cls] = plan
    return plan
