"""HTTP API and dashboards of the cloud."""
