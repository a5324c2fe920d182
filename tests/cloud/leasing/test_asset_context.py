"""The detectors learn each gateway's asset type and lease region from the leasing store."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cloud.detection.context import ContextFileError, FileContextSource
from cloud.detectors.inputs import Region
from cloud.leasing.asset_context import LeasingContextSource
from cloud.leasing.models import AssetIn
from cloud.leasing.store import LeasingStore
from cloud.risk.calendars import year_holidays
from cloud.state import StateStore
from tests.cloud.leasing.conftest import AS_OF, make_lease


def test_gateways_on_leased_assets_get_type_and_region_others_the_fallback(
    state: StateStore,
) -> None:
    leasing = LeasingStore(state.engine)
    make_lease(leasing, "LS-1", ["gw-0001", "gw-0002"])
    leasing.put_asset(AssetIn(asset_id="spare", asset_type="compressor", device="gw-0003"), AS_OF)
    fallback = FileContextSource.of_types({"gw-0009": "truck"})
    source = LeasingContextSource(state.engine, fallback)

    got = source.contexts(["gw-0001", "gw-0003", "gw-0009", "gw-0404", "gw-0001"])

    assert list(got) == ["gw-0001", "gw-0003", "gw-0009", "gw-0404"]
    assert got["gw-0001"].asset_type == "excavator"
    assert got["gw-0001"].region == Region(center=(48.1, 11.5), radius_km=50.0)
    assert (got["gw-0003"].asset_type, got["gw-0003"].region) == ("compressor", None)
    assert got["gw-0009"].asset_type == "truck", "not in the leasing store: the fallback's"
    assert got["gw-0404"].asset_type == "generic"


def test_answers_are_kept_for_a_while_then_read_again(state: StateStore) -> None:
    leasing = LeasingStore(state.engine)
    make_lease(leasing, "LS-1", ["gw-0001"])
    cached = LeasingContextSource(state.engine, FileContextSource(), cache_s=3600)
    uncached = LeasingContextSource(state.engine, FileContextSource(), cache_s=0)
    assert cached.contexts(["gw-0001"])["gw-0001"].asset_type == "excavator"

    leasing.put_asset(
        AssetIn(asset_id="LS-1-A0", asset_type="truck", device="gw-0001", lease_id="LS-1"), AS_OF
    )

    assert cached.contexts(["gw-0001"])["gw-0001"].asset_type == "excavator"
    assert uncached.contexts(["gw-0001"])["gw-0001"].asset_type == "truck"


def test_an_asset_gets_its_regions_public_holidays_from_the_scoring_rules(
    state: StateStore,
) -> None:
    """rhine-ruhr maps to DE-NW in the shipped rules; DE-NI is a code itself; no region: none."""
    corpus_christi = date(2026, 6, 4)
    leasing = LeasingStore(state.engine)
    make_lease(leasing, "LS-K", ["gw-cologne"], region="rhine-ruhr")
    make_lease(leasing, "LS-H", ["gw-hanover"], region="DE-NI")
    make_lease(leasing, "LS-X", ["gw-nowhere"])
    source = LeasingContextSource(state.engine, FileContextSource(), today=lambda: corpus_christi)

    got = source.contexts(["gw-cologne", "gw-hanover", "gw-nowhere"])

    assert got["gw-cologne"].holidays == year_holidays("DE-NW", 2025) | year_holidays(
        "DE-NW", 2026
    ) | year_holidays("DE-NW", 2027)
    assert corpus_christi in got["gw-cologne"].holidays
    assert corpus_christi not in got["gw-hanover"].holidays
    assert date(2026, 5, 14) in got["gw-hanover"].holidays  # Ascension: all of Germany
    assert got["gw-nowhere"].holidays == frozenset()


def test_a_context_file_names_a_calendar_and_a_plants_own_days(tmp_path: Path) -> None:
    path = tmp_path / "context.toml"
    path.write_text(
        '[defaults]\ncalendar = "NL"\nholidays = [2026-12-24]\n[assets.gw-1]\ncalendar = "DE-NW"\n',
        encoding="utf-8",
    )
    got = FileContextSource.from_file(path).contexts(["gw-1", "gw-2"])
    year = datetime.now(UTC).year
    assert date(2026, 12, 24) in got["gw-2"].holidays  # the plant's own day, with NL's
    assert year_holidays("NL", year) <= got["gw-2"].holidays
    assert year_holidays("DE-NW", year) <= got["gw-1"].holidays
    assert date(year, 10, 3) in got["gw-1"].holidays - got["gw-2"].holidays  # German Unity Day
    path.write_text('[defaults]\ncalendar = "DE-XX"\n', encoding="utf-8")
    with pytest.raises(ContextFileError, match="holiday calendar 'DE-XX': DE has no subdivision"):
        FileContextSource.from_file(path)
