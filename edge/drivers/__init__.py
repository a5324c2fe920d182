"""Sensor drivers of the edge agent; one driver per module, registered explicitly."""
