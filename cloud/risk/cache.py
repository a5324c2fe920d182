"""A disk cache of a scenario's detector histories, keyed by everything that could change them.

Running the detectors over the portfolio takes minutes; scoring it takes seconds. The backtest
keeps each scenario's histories (daily running and covered hours, detector episodes) in one
`.npz` file named by a SHA-256 of the scenario (name or file text), the subsample size, and the
source of every module the histories come from (the detectors, the simulator, the wire
contract, this package's pipeline). Change any of them and the key changes: a stale cache is
never read. Files are plain arrays and JSON (`allow_pickle=False`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from cloud.risk.history import AssetHistory, Episode

FORMAT = "risk-histories-2"
_ROOT = Path(__file__).resolve().parents[2]
#: Sources the histories depend on (folders are read recursively: *.py and *.toml).
SOURCES = (
    "cloud/detectors",
    "firmware_sim/scenarios",
    "leasewatch/wire.py",
    "cloud/risk/pipeline.py",
    "cloud/risk/cache.py",
)


class CacheError(Exception):
    """A cache file that exists but cannot be read; the message names it."""


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/leasewatch/risk` (default `~/.cache/leasewatch/risk`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leasewatch" / "risk"


def _source_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = _ROOT / name
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".py", ".toml"))
        elif path.exists():
            files.append(path)
    return files


def cache_key(scenario: str, assets: int | None) -> str:
    """The key of a scenario's histories: scenario, subsample and the sources behind them."""
    digest = hashlib.sha256(f"{FORMAT}\0{scenario}\0{assets}\0".encode())
    scenario_file = Path(scenario)
    if scenario_file.suffix == ".toml" and scenario_file.exists():
        digest.update(scenario_file.read_bytes())
    for path in _source_files():
        digest.update(str(path.relative_to(_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:32]


def _episodes(found: Sequence[Episode]) -> list[list[str | None]]:
    return [[e.reported.isoformat(), e.cleared.isoformat() if e.cleared else None] for e in found]


def _parse(found: list[list[str | None]]) -> tuple[Episode, ...]:
    return tuple(
        Episode(datetime.fromisoformat(str(r)), None if c is None else datetime.fromisoformat(c))
        for r, c in found
    )


def save(path: Path, histories: Sequence[AssetHistory]) -> None:
    """Write histories to `path` (atomically: a temporary file renamed into place)."""
    meta = [
        {
            "asset": h.asset, "lease": h.lease, "start": h.start.isoformat(),
            "expected_per_day": h.expected_per_day, "asset_type": h.asset_type,
            "region": h.region, "capacity": _episodes(h.capacity),
            "tamper": _episodes(h.tamper), "geofence": _episodes(h.geofence),
        }
        for h in histories
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez_compressed(
        partial,
        hours=np.stack([h.hours for h in histories]),
        covered=np.stack([h.covered for h in histories]),
        meta=np.array(json.dumps(meta)),
    )
    partial.replace(path)


def load(path: Path) -> list[AssetHistory]:
    """Histories from a file `save` wrote."""
    try:
        with np.load(path, allow_pickle=False) as data:
            hours, covered = data["hours"], data["covered"]
            meta = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as err:
        raise CacheError(f"{path}: unreadable risk cache ({err}); delete it to rebuild") from err
    return [
        AssetHistory(
            asset=m["asset"], lease=m["lease"], start=datetime.fromisoformat(m["start"]),
            hours=hours[i], covered=covered[i], expected_per_day=m["expected_per_day"],
            asset_type=m["asset_type"], region=m["region"], capacity=_parse(m["capacity"]),
            tamper=_parse(m["tamper"]), geofence=_parse(m["geofence"]),
        )
        for i, m in enumerate(meta)
    ]  # fmt: skip
