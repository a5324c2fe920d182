"""Plotly figures and pages for asset managers and the risk team."""
