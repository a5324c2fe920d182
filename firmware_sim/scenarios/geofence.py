"""Where an asset was outside its permitted region: the ground truth of relocation labels.

Positions only change during moves, so the track is stepped minute by minute along each move;
an asset that leaves the region starts an *outside window* that lasts until a later move brings
it back (or the scenario ends). A move that never leaves the region is benign.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.scenarios.expand import Incident
from firmware_sim.scenarios.timeline import AssetTimeline, distance_km

STEP_S = 60.0


@dataclass(frozen=True, slots=True)
class OutsideWindow:
    """A time the asset spent outside its permitted region, and the move that took it there."""

    start: float  # first minute outside
    end: float  # first minute back inside, or the scenario end
    move: Incident
    farthest_km: float  # how far outside the region boundary it got (at move destinations)


@dataclass(frozen=True, slots=True)
class Region:
    """A permitted region as a circle."""

    center: tuple[float, float]
    radius_km: float

    def outside_km(self, position: tuple[float, float]) -> float:
        """Distance beyond the boundary (negative inside)."""
        return distance_km(position, self.center) - self.radius_km


def outside_windows(
    timeline: AssetTimeline, moves: list[Incident], region: Region, end: float
) -> tuple[list[OutsideWindow], list[Incident]]:
    """The asset's outside windows, and the moves that stayed inside the region (benign)."""
    windows: list[OutsideWindow] = []
    benign: list[Incident] = []
    opened: tuple[float, Incident, float] | None = None  # start, move, farthest
    for move in sorted(moves, key=lambda m: m.start):
        left = False
        for t in _track(move):
            beyond = region.outside_km(timeline.position(t))
            if beyond > 0 and opened is None:
                opened, left = (t, move, beyond), True
            elif beyond > 0 and opened is not None:
                opened = (opened[0], opened[1], max(opened[2], beyond))
            elif beyond <= 0 and opened is not None:
                windows.append(OutsideWindow(opened[0], t, opened[1], opened[2]))
                opened, left = None, True
        if not left and opened is None:
            benign.append(move)
    if opened is not None:
        windows.append(OutsideWindow(opened[0], end, opened[1], opened[2]))
    return windows, benign


def _track(move: Incident) -> list[float]:
    """Instants along a move: every minute from departure to arrival, arrival included."""
    arrival = move.start + move.travel_s
    steps = int(move.travel_s // STEP_S)
    return [move.start + n * STEP_S for n in range(steps + 1)] + [arrival]
