"""Alerts: what detectors raise, their lifecycle, suppression and delivery."""
