"""Detectors: utilization drops, faults, silence and geofence, streaming per asset and offline.

`registry.DETECTORS` lists them; `base.evaluate(description, state_json, asset_data)` is one
evaluation for the runner; `offline` feeds the same detector objects from CSV files.
"""
