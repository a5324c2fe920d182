"""Alembic migrations of the state store (run by StateStore at start, or `alembic upgrade`)."""
