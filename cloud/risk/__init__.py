"""Lease risk: signals, scoring rules, scores with reasons, backtests."""
