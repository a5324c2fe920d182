"""`leasewatch demo`: the whole system on embedded defaults."""


def demo() -> None:
    """Run the demo (being built)."""
    raise SystemExit("the demo is not built yet")
