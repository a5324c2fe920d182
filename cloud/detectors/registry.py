"""The detectors, declared as data: key, history window, thresholds, value function, factories."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cloud.detectors.base import DetectorDescription
from cloud.detectors.faults import FaultDetector, FaultThresholds, fault_inputs
from cloud.detectors.geofence import GeofenceDetector, GeofenceThresholds, geofence_inputs
from cloud.detectors.silence import SilenceDetector, SilenceThresholds, silence_inputs
from cloud.detectors.utilization import (
    UtilizationDetector,
    UtilizationThresholds,
    utilization_inputs,
)

UTILIZATION: DetectorDescription[Any, Any] = DetectorDescription(
    key="utilization",
    summary="Sustained drops in daily running hours against the asset's own weekly baseline.",
    window=timedelta(days=8),  # 1-hour rollups of `running`: the days since the last one judged
    thresholds=UtilizationThresholds(),
    value_fn=utilization_inputs,
    create=UtilizationDetector.create,
    restore=UtilizationDetector.restore,
)
FAULTS: DetectorDescription[Any, Any] = DetectorDescription(
    key="faults",
    summary="Profile limits, failed sensors, fault codes, statistical anomalies and wear.",
    window=timedelta(hours=6),  # 1-minute rollups past the detector's watermark
    thresholds=FaultThresholds(),
    value_fn=fault_inputs,
    create=FaultDetector.create,
    restore=FaultDetector.restore,
)
SILENCE: DetectorDescription[Any, Any] = DetectorDescription(
    key="silence",
    summary="Why a gateway went quiet (network, power, tamper), one finding per gateway; parked.",
    window=timedelta(hours=6),
    thresholds=SilenceThresholds(),
    value_fn=silence_inputs,
    create=SilenceDetector.create,
    restore=SilenceDetector.restore,
)
GEOFENCE: DetectorDescription[Any, Any] = DetectorDescription(
    key="geofence",
    summary="Position outside the lease's permitted region for longer than a grace period.",
    window=timedelta(hours=6),
    thresholds=GeofenceThresholds(),
    value_fn=geofence_inputs,
    create=GeofenceDetector.create,
    restore=GeofenceDetector.restore,
)

#: Every detector by key; the runner evaluates each for every asset.
DETECTORS: dict[str, DetectorDescription[Any, Any]] = {
    d.key: d for d in (UTILIZATION, FAULTS, SILENCE, GEOFENCE)
}
