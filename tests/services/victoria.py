"""VictoriaMetrics started by the tests (placeholder until the store work lands)."""
