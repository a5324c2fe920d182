"""Simulated device firmware: Modbus slaves on virtual serial ports, fleets, scenarios."""
