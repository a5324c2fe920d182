"""Detector states as dataclasses, to and from JSON text through orjson.

The states of `faults`, `silence` and `geofence` are restored and saved for every gateway of
every batch the ingest workers detect on, so they are plain dataclasses instead of pydantic
models (without `__slots__`: orjson writes an instance's `__dict__` fastest). orjson writes
them in the shape the models wrote (fields in declaration order, times in ISO 8601 with `Z`,
dates as `YYYY-MM-DD`, non-finite floats as `null`), and `build` reads that shape back
(unknown keys ignored, missing ones defaulted), so the states stored before load as they did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


def dumps(state: object) -> str:
    """A state (a dataclass, nested dataclasses inside) as JSON text."""
    return orjson.dumps(state, option=_OPTIONS).decode()


def loads(text: str | bytes) -> dict[str, Any]:
    """A state's JSON object; TypeError for any other JSON value."""
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"detector state must be a JSON object, found {type(value).__name__}")
    return value


_FIELDS: dict[type, frozenset[str]] = {}


def _names(cls: type) -> frozenset[str]:
    """The field names of a dataclass (kept per class)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def build(
    cls: type[T],
    doc: dict[str, Any],
    *,
    times: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
    nested: Mapping[str, Callable[[Any], Any]] | None = None,
) -> T:
    """A dataclass from its JSON object (taken): times, dates and nested values built."""
    if doc.get("version", 1) != 1:
        raise ValueError(f"unknown state version {doc['version']!r}")
    for name in times:
        text = doc.get(name)
        if text is not None:
            doc[name] = datetime.fromisoformat(text)
    for name in dates:
        text = doc.get(name)
        if text is not None:
            doc[name] = date.fromisoformat(text)
    for name, make in (nested or {}).items():
        value = doc.get(name)
        if value is not None:
            doc[name] = make(value)
    return adopt(cls, doc)


def adopt(cls: type[T], doc: dict[str, Any]) -> T:
    """A dataclass of plain JSON fields from its object (taken, not copied).

    An object with exactly the class's fields (what this version writes) becomes the
    instance's `__dict__` as it is; any other is filtered and defaulted through `__init__`.
    """
    known = _FIELDS.get(cls) or _names(cls)
    if doc.keys() == known:
        instance = object.__new__(cls)
        instance.__dict__ = doc
        return instance
    return cls(**{k: v for k, v in doc.items() if k in known})
