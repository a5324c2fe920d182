"""Fault episodes for the backtest: the fault detector over each asset's minutes, by severity.

The live scoring counts a lease's open `faults` alerts by severity (`faults_warning`,
`faults_critical`: one alert per detector key, so one asset can have several open). Here the
fault detector (`cloud.detectors.faults`) runs over each asset's minute samples in 10-minute
batches through the quality score's own loop (`scoring_faults.run_asset`), and every (key)
episode keeps its severity.

It is slow: about 37 ms of CPU per asset-day (minute samples and the robust scorer), so the
2,000-asset portfolio year (730,000 asset-days) would take hours. The backtest runs it only
when asked (`--faults`), on a scenario subsampled with `--assets`. Episodes are cached beside
the histories, keyed by the histories' key and the source of this module and of that loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cloud.alerts.signals import Severity
from cloud.detectors import scoring_faults
from cloud.detectors.scoring import load
from cloud.detectors.scoring_faults import run_asset
from cloud.risk import cache
from cloud.risk.history import AssetHistory, Episode
from cloud.risk.pipeline import Progress, fan_out
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.run import simulated_assets

Found = dict[str, tuple[tuple[Episode, ...], tuple[Episode, ...]]]  # asset -> (warning, critical)


def asset_faults(
    sim: SimulatedAsset, resolved: ResolvedScenario
) -> tuple[tuple[Episode, ...], tuple[Episode, ...]]:
    """One asset's fault episodes over the scenario: (warning, critical)."""
    episodes = run_asset(sim, resolved)

    def of(severity: Severity) -> tuple[Episode, ...]:
        return tuple(Episode(e.opened, e.cleared) for e in episodes if e.severity is severity)

    return of(Severity.WARNING), of(Severity.CRITICAL)


def chunk_faults(scenario: str, assets: int | None, chunk: Sequence[str]) -> Found:
    """Fault episodes of the assets in `chunk` (one worker)."""
    resolved = load(scenario, assets)
    wanted = set(chunk)
    return {
        sim.timeline.spec.id: asset_faults(sim, resolved)
        for sim in simulated_assets(resolved)
        if sim.timeline.spec.id in wanted
    }


def cache_path(directory: Path, scenario: str, assets: int | None) -> Path:
    """The fault episodes' cache file: the histories' key plus the fault loop's source."""
    digest = hashlib.sha256(cache.cache_key(scenario, assets).encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(scoring_faults.__file__).read_bytes())
    return directory / f"faults-{digest.hexdigest()[:32]}.json"


def _plain(episodes: Sequence[Episode]) -> list[list[str | None]]:
    return [
        [e.reported.isoformat(), e.cleared.isoformat() if e.cleared else None] for e in episodes
    ]


def _episodes(rows: list[list[str | None]]) -> tuple[Episode, ...]:
    return tuple(
        Episode(datetime.fromisoformat(str(r)), datetime.fromisoformat(c) if c else None)
        for r, c in rows
    )


def save(path: Path, found: Found) -> None:
    """Write fault episodes to `path` (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    document = {a: [_plain(w), _plain(c)] for a, (w, c) in found.items()}
    partial.write_text(json.dumps(document), encoding="utf-8")
    partial.replace(path)


def read(path: Path) -> Found:
    """Fault episodes from a file `save` wrote."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {a: (_episodes(w), _episodes(c)) for a, (w, c) in document.items()}
    except (OSError, ValueError, TypeError) as err:
        raise cache.CacheError(f"{path}: unreadable fault cache ({err}); delete it") from err


def with_faults(histories: Sequence[AssetHistory], found: Found) -> list[AssetHistory]:
    """The histories with their assets' fault episodes."""
    return [
        replace(h, faults_warning=found[h.asset][0], faults_critical=found[h.asset][1])
        if h.asset in found
        else h
        for h in histories
    ]


def fault_episodes(
    scenario: str, assets: int | None, workers: int, cache_dir: Path | None,
    progress: Progress,
) -> Found:  # fmt: skip
    """Every asset's fault episodes: from the cache when its key matches, else computed."""
    path = None if cache_dir is None else cache_path(cache_dir, scenario, assets)
    if path is not None and path.exists():
        progress(f"fault episodes from {path}")
        return read(path)
    ids = [spec.id for spec in load(scenario, assets).assets]
    chunks = [ids[i::workers] for i in range(workers) if ids[i::workers]]
    started = time.monotonic()
    found: Found = {}
    for part in fan_out(chunk_faults, [(scenario, assets, c) for c in chunks], workers):
        found.update(part)
    progress(f"fault detector on {len(ids)} assets: {time.monotonic() - started:.0f} s")
    if path is not None:
        save(path, found)
    return found
