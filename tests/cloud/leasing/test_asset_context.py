"""The detectors learn each gateway's asset type and lease region from the leasing store."""

from __future__ import annotations

from cloud.detection.context import FileContextSource
from cloud.detectors.inputs import Region
from cloud.leasing.asset_context import LeasingContextSource
from cloud.leasing.models import AssetIn
from cloud.leasing.store import LeasingStore
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
