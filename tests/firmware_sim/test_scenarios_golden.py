"""Golden digests of what the gateways publish: making fleet mode cheaper must not change a byte.

The digests were taken from the encoder before its caches (commit 2f037c7) and cover every
publish of two scenarios with all silences and data faults, and a day of `fleet-load`: topic,
simulated due time, retain flag, fault, detail, reading count and payload bytes. Those of
`faults` (sensor failures, machine faults) and `utilization` (declines, parking) were taken
before the asset model's per-day run-hour accumulator (commit 36a9f32).
"""

from __future__ import annotations

import hashlib

import pytest

from firmware_sim.scenarios import load_scenario, resolve
from firmware_sim.scenarios.run import messages_of, simulated_assets, windows

GOLDEN = {
    "data-faults": (10_586, "d06a5a6443222683cb1a59f5149088623a70c6b4b28112b617b618c99a84ae6c"),
    "silence": (16_498, "68ab28320398cfff8248f03ace2fc8ccf0e87cbff9bb20a10acccb1678717bd0"),
    "fleet-load": (5_746, "3795965fdd19d7bae836b82ecccd3aaf77d30043fc1901446a8288dbf6ac37e3"),
    "faults": (34_564, "813eb1663d1d1264c6c1dbde2404953bd2a287d4c65216157aba4032b5ad6bac"),
    "utilization": (36_010, "3074300c79946e63a178906ed1db8528fa6292f462d9fe1eafeb2ba92068163d"),
}
#: assets, windows: a day of fleet-load; faults' three named assets (a missing, a stuck and an
#: out-of-range sensor, overheating, overload, bearing wear) and one more, all 60 days; ten
#: utilization assets (declines, a parked one, seasonal dips), all 150 days; the others whole
SIZES = {"fleet-load": (20, 288), "faults": (4, 8_640), "utilization": (10, 3_600)}


def _digest(name: str) -> tuple[int, str]:
    """How many messages a scenario publishes and a SHA-256 of all of them, in order."""
    scenario = load_scenario(name)
    assets, count = SIZES.get(name, (None, None))
    if assets is not None:
        scenario = scenario.with_asset_count(assets)
    resolved = resolve(scenario)
    digest, messages = hashlib.sha256(), 0
    for asset in simulated_assets(resolved, boot_tag="golden"):
        for m in messages_of(asset, count or windows(resolved)):
            head = f"{m.topic}|{m.due!r}|{m.retain}|{m.fault}|{m.detail}|{m.readings}|"
            digest.update(head.encode())
            digest.update(m.payload)
            messages += 1
    return messages, digest.hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_published_bytes_of_a_scenario_stay_as_they_were(name: str) -> None:
    assert _digest(name) == GOLDEN[name]
