"""Real services started by the tests themselves, on free loopback ports."""
