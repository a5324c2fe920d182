"""Process runners for real services (Mosquitto, VictoriaMetrics, PostgreSQL, ingest, edge).

Each module starts one kind of process on free loopback ports, waits until it answers and can
stop, kill or restart it; failures raise `ServiceError` with what went wrong and the log tail.
Used by `leasewatch chaos`; the test fixtures can build on the same runners.
"""
