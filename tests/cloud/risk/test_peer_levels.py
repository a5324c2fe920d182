"""Peer levels supplied from elsewhere (a credit check's cached group figures) score the same."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from cloud.risk.history import AssetHistory
from cloud.risk.portfolio import PeerLevels, Portfolio

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 160


def _group() -> list[AssetHistory]:
    """Eight excavators; the first one's lessee loses work from day 100, all dip on 130-140."""
    rng = np.random.default_rng(11)
    histories = []
    for n in range(8):
        hours = np.tile([8.0, 8.0, 8.0, 8.0, 8.0, 3.0, 0.0], DAYS // 7 + 1)[:DAYS]
        hours = hours * rng.uniform(0.9, 1.1, DAYS)
        hours[130:140] *= 0.3
        if n == 0:
            hours[100:] *= 0.4
        covered = np.full(DAYS, 24.0)
        histories.append(
            AssetHistory(f"a{n}", f"L-{n}", START, hours, covered, 6.0, "excavator", "south")
        )
    return histories


def test_one_lease_scored_with_its_groups_levels_matches_the_whole_portfolio() -> None:
    histories = _group()
    whole = Portfolio(histories, {})
    for day in (60, 120, 137, 150):
        levels = whole.peer_levels(day)
        alone = Portfolio(histories[:1], {})
        first = PeerLevels(
            levels.contract[:1],
            levels.baseline[:1],
            levels.weekly[:1],
            levels.sizes[:1],
            levels.daily[:1],
        )
        assert alone.signals(day, first) == [whole.signals(day)[0]]
    assert whole.signals(150)[0].weeks_below_baseline >= 5
    assert Portfolio(histories[:1], {}).signals(150)[0].peer_group_size == 1
