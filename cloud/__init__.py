"""Cloud: ingestion, stores, API."""
