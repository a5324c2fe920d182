"""Tests of the dashboards as a browser shows them."""
