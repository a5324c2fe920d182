"""Geofence: outside the permitted region for longer than the grace period, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.detectors.geofence import (
    GeofenceDetector,
    GeofenceInputs,
    GeofenceThresholds,
    outside_km,
)
from cloud.detectors.inputs import PositionInput, Region

T0 = datetime(2025, 4, 7, tzinfo=UTC)
CIRCLE = Region(center=(51.5, 4.9), radius_km=200.0)
SQUARE = Region(polygon=((51.0, 4.0), (52.0, 4.0), (52.0, 5.0), (51.0, 5.0)))
INSIDE, OUTSIDE = (51.5, 4.9), (45.76, 4.84)


def fixes(points: list[tuple[float, float]], every: int = 10) -> tuple[PositionInput, ...]:
    return tuple(PositionInput(T0 + timedelta(minutes=every * n), *p) for n, p in enumerate(points))


def test_distance_outside_circle_and_polygon() -> None:
    assert outside_km(CIRCLE, INSIDE) == 0.0
    assert 430 < outside_km(CIRCLE, OUTSIDE) < 460
    assert outside_km(SQUARE, (51.5, 4.5)) == 0.0
    assert 60 < outside_km(SQUARE, (51.5, 6.0)) < 75  # about 69 km east of the edge


def test_short_excursion_within_grace_is_not_reported() -> None:
    detector = GeofenceDetector.create("t-1", "truck", GeofenceThresholds())
    track = [INSIDE] * 3 + [OUTSIDE] * 3 + [INSIDE] * 3  # 20 minutes outside
    assert detector.update(GeofenceInputs(fixes(track), CIRCLE), T0) == []


def test_outside_past_grace_opens_dated_from_the_first_fix_and_clears_back_inside() -> None:
    detector = GeofenceDetector.create("t-1", "truck", GeofenceThresholds())
    track = [INSIDE] * 3 + [OUTSIDE] * 6 + [INSIDE] * 6
    found = detector.update(GeofenceInputs(fixes(track), SQUARE), T0)
    assert [f.state for f in found] == ["open", "cleared"]
    assert found[0].since == T0 + timedelta(minutes=30)
    assert found[0].evaluated_at == T0 + timedelta(minutes=60)  # the fix that made it
    assert found[0].magnitude and found[0].magnitude > 100


def test_state_round_trip_keeps_the_outside_clock() -> None:
    detector = GeofenceDetector.create("t-1", "truck", GeofenceThresholds())
    track = fixes([INSIDE] + [OUTSIDE] * 5)
    detector.update(GeofenceInputs(track[:3], CIRCLE), T0)
    restored = GeofenceDetector.restore(detector.to_json(), GeofenceThresholds())
    found = restored.update(GeofenceInputs(track, CIRCLE), T0)
    assert [f.state for f in found] == ["open"]
    assert found[0].since == T0 + timedelta(minutes=10)
