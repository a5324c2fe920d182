"""Free loopback ports and waiting for a service to listen (the package's, for the tests)."""

from leasewatch.services.process import free_port, wait_for_port

__all__ = ["free_port", "wait_for_port"]
