"""The asset page: an asset's recent readings, one panel per measure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cloud.telemetry import StoredReading

PLOTLY_JS_URL = "/static/plotly.min.js"


def readings_figure(device: str, readings: Sequence[StoredReading]) -> go.Figure:
    """One shared-time panel per (sensor, metric), titled with its unit."""
    series: dict[tuple[str, str, str], list[StoredReading]] = defaultdict(list)
    for reading in readings:
        series[(reading.sensor, reading.metric, reading.unit)].append(reading)
    keys = sorted(series)
    titles = [
        f"{sensor} · {metric}" + (f" [{unit}]" if unit else "") for sensor, metric, unit in keys
    ]
    figure = make_subplots(
        rows=max(1, len(keys)),
        cols=1,
        shared_xaxes=True,
        subplot_titles=titles or ["no readings"],
        vertical_spacing=0.04 if len(keys) > 4 else 0.08,
    )
    for row, key in enumerate(keys, start=1):
        points = series[key]
        figure.add_trace(
            go.Scatter(
                x=[p.ts for p in points],
                y=[p.value for p in points],
                mode="lines+markers",
                name=titles[row - 1],
                marker={"size": 4},
            ),
            row=row,
            col=1,
        )
    figure.update_layout(
        title=f"Asset gateway {device}: recent readings",
        height=max(320, 220 * len(keys)),
        showlegend=False,
        margin={"l": 60, "r": 20, "t": 80, "b": 40},
        template="plotly_white",
    )
    return figure


def asset_page_html(device: str, readings: Sequence[StoredReading], window_label: str) -> str:
    """A whole HTML page for the asset, loading plotly.js from this server (works offline)."""
    figure = readings_figure(device, readings)
    body = figure.to_html(full_html=False, include_plotlyjs=PLOTLY_JS_URL, div_id="readings-plot")
    return _page(
        f"LeaseWatch · {device}",
        f'<p><a href="/dashboards">All gateways</a> · {len(readings)} readings, '
        f"{escape(window_label)}</p>{body}",
    )


def device_index_html(devices: Sequence[dict[str, object]]) -> str:
    """The list of gateways with their status, each linking to its asset page."""
    rows = "".join(_device_row(d) for d in devices)
    table = (
        "<table><thead><tr><th>Gateway</th><th>Status</th><th>Latest reading</th>"
        f"<th>Readings</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return _page("LeaseWatch · gateways", table)


def _device_row(device: dict[str, object]) -> str:
    name = escape(str(device["device"]))
    status = escape(str(device["status"]))
    latest = escape(str(device["latest_reading_at"] or "-"))
    return (
        f'<tr><td><a href="/dashboards/devices/{name}">{name}</a></td>'
        f'<td class="{status}">{status}</td><td>{latest}</td><td>{device["readings"]}</td></tr>'
    )


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}"
        "table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd}"
        ".online{color:#137333}.offline{color:#b3261e}</style></head>"
        f"<body><h1>{escape(title)}</h1>{content}</body></html>"
    )
