"""Deterministic uniform draws keyed by integers: the same on every run, platform and call order.

A scenario never uses a shared random generator: each draw is a pure hash (SplitMix64) of the
scenario seed, a stream and the keys that identify what is drawn (asset, day, message), so adding
an asset or asking in a different order never changes another draw.
"""

from __future__ import annotations

import enum
import hashlib

_MASK = (1 << 64) - 1
_TO_UNIT = 1.0 / (1 << 53)


class Stream(enum.IntEnum):
    """What a draw is for; keeps the draws of different purposes independent."""

    SELECT = 1
    PARAMETER = 2
    ASSET = 3
    DAY = 4
    STOP = 5
    LOAD = 6
    JITTER = 7
    DATA_FAULT = 8
    MALFORMED = 9
    POSITION = 10
    RIPPLE = 11


def fold(*keys: int) -> int:
    """A 64-bit hash of the keys: a prefix that `draw_after` continues from."""
    h = 0
    for key in keys:
        x = (h ^ (key & _MASK)) + 0x9E3779B97F4A7C15 & _MASK
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
        h = x ^ (x >> 31)
    return h


def draw_after(prefix: int, *keys: int) -> float:
    """A uniform float in [0, 1) fixed by a folded prefix and more keys."""
    h = prefix
    for key in keys:
        x = (h ^ (key & _MASK)) + 0x9E3779B97F4A7C15 & _MASK
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
        h = x ^ (x >> 31)
    return (h >> 11) * _TO_UNIT


def draw(*keys: int) -> float:
    """A uniform float in [0, 1) fixed by the keys."""
    return draw_after(0, *keys)


def uniform(low: float, high: float, *keys: int) -> float:
    """A uniform float in [low, high) fixed by the keys."""
    return low + (high - low) * draw_after(0, *keys)


def name_key(name: str) -> int:
    """A stable 64-bit key for a name (an asset id, an event label)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
