"""Mosquitto started by the tests (placeholder until the broker work lands)."""
