"""Shared fixtures: the real services each integration test starts for itself."""

pytest_plugins = [
    "tests.services.victoria",
    "tests.services.mosquitto",
    "tests.services.postgres",
    "tests.services.browser",
]
