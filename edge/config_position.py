"""Where a configuration key sits in its TOML text, so errors can name the line."""

from __future__ import annotations

from collections.abc import Sequence

Path = tuple[str | int, ...]


def _names(header: str) -> list[str]:
    return [part.strip().strip('"').strip("'") for part in header.split(".")]


class _Walker:
    """Tracks the current table, and arrays of tables with their element counts."""

    def __init__(self) -> None:
        self.arrays: dict[Path, int] = {}
        self.current: Path = ()
        self.lines: dict[Path, int] = {}

    def resolve(self, names: Sequence[str]) -> Path:
        path: Path = ()
        for name in names:
            path = (*path, name)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def line(self, number: int, text: str) -> None:
        stripped = text.split("#", 1)[0].strip()
        if stripped.startswith("[[") and "]]" in stripped:
            names = _names(stripped[2 : stripped.index("]]")])
            array = (*self.resolve(names[:-1]), names[-1])
            self.arrays[array] = self.arrays.get(array, 0) + 1
            self.current = (*array, self.arrays[array] - 1)
        elif stripped.startswith("[") and "]" in stripped:
            self.current = self.resolve(_names(stripped[1 : stripped.index("]")]))
        elif "=" in stripped:
            key = tuple(_names(stripped.split("=", 1)[0]))
            self.lines.setdefault((*self.current, *key), number)
            return
        else:
            return
        self.lines.setdefault(self.current, number)


def key_lines(text: str) -> dict[Path, int]:
    """Line number (1-based) of every table and key path in TOML text."""
    walker = _Walker()
    for number, line in enumerate(text.splitlines(), start=1):
        walker.line(number, line)
    return walker.lines


def line_of(lines: dict[Path, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest known part of a validation error's location."""
    for end in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None
