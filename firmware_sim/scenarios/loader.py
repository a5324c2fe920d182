"""Load scenario files (TOML), by path or by the name of one shipped with LeaseWatch.

Errors name the key and say what is wrong, one line each, e.g.
`smoke.toml: events[2].magnitude: 0.9 is out of range: must be >= 0.2 and <= 0.8`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from firmware_sim.scenarios.model import EVENT_KINDS, Scenario

NAMED_PACKAGE = "firmware_sim.scenarios.named"


class ScenarioError(Exception):
    """A scenario that cannot be loaded: unknown name, bad TOML or invalid content."""


def _where(loc: tuple[int | str, ...]) -> str:
    """`events[2].magnitude` from pydantic's ('events', 2, 'utilization_decline', 'magnitude')."""
    text = ""
    for index, part in enumerate(loc):
        after_event = index >= 2 and loc[index - 2] == "events" and isinstance(loc[index - 1], int)
        if after_event and part in EVENT_KINDS:
            continue  # the discriminator tag pydantic adds
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _describe(error: ErrorDetails) -> str:
    """One line for one validation error."""
    where = _where(tuple(error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    if not where:
        return message
    shown = error.get("input")
    if error["type"] not in ("value_error", "missing") and isinstance(shown, str | int | float):
        message += f" (got {shown!r})"
    return f"{where}: {message}"


def parse_scenario(text: str, origin: str = "<scenario>") -> Scenario:
    """A validated scenario from TOML text; `origin` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{origin}: not valid TOML: {err}") from err
    try:
        return Scenario.model_validate(document)
    except ValidationError as err:
        lines = "\n".join(f"  {_describe(e)}" for e in err.errors(include_url=False))
        raise ScenarioError(f"{origin}: {err.error_count()} problem(s):\n{lines}") from err


def named_scenarios() -> dict[str, str]:
    """Shipped scenarios: name -> description, in name order."""
    found: dict[str, str] = {}
    for entry in sorted(resources.files(NAMED_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            scenario = parse_scenario(entry.read_text(encoding="utf-8"), entry.name)
            found[scenario.name] = scenario.description
    return found


def load_scenario(source: str | Path) -> Scenario:
    """A scenario by file path, or by the name of a shipped one (see `named_scenarios`)."""
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ScenarioError(f"{path}: cannot read: {err.strerror}") from err
        return parse_scenario(text, str(path))
    entry = resources.files(NAMED_PACKAGE).joinpath(f"{source}.toml")
    if not entry.is_file():
        known = ", ".join(named_scenarios())
        raise ScenarioError(f"no scenario named {source!r}; shipped scenarios: {known}")
    return parse_scenario(entry.read_text(encoding="utf-8"), entry.name)
