"""The asset page: measures, running hours vs baseline, alerts, silences, health, commands."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cloud.commands.store import CommandRecord
from dashboards.asset_data import RANGES, AssetView, DayHours, Series
from dashboards.layout import (
    SEVERITY_COLORS,
    figure_div,
    page,
    table,
    url_with,
    when,
)

_SILENCE_FILL = "rgba(179,38,30,0.12)"


def series_title(series: Series) -> str:
    """`sensor · metric [unit]`: the name of a measure's panel and trace."""
    unit = f" [{series.unit}]" if series.unit else ""
    return f"{series.sensor} · {series.metric}{unit}"


def _add_series(figure: go.Figure, series: Series, row: int, *, band: bool) -> None:
    if band:
        figure.add_trace(
            go.Scatter(x=series.ts, y=series.high, mode="lines", line={"width": 0},
                       name=f"{series_title(series)} max", hoverinfo="skip", showlegend=False),
            row=row, col=1,
        )  # fmt: skip
        figure.add_trace(
            go.Scatter(x=series.ts, y=series.low, mode="lines", line={"width": 0},
                       fill="tonexty", fillcolor="rgba(26,115,232,0.15)",
                       name=f"{series_title(series)} min", hoverinfo="skip", showlegend=False),
            row=row, col=1,
        )  # fmt: skip
    figure.add_trace(
        go.Scatter(x=series.ts, y=series.mean, mode="lines+markers", name=series_title(series),
                   marker={"size": 4}, line={"color": "#1a73e8"}),
        row=row, col=1,
    )  # fmt: skip


def _mark_alerts(figure: go.Figure, view: AssetView, rows: int) -> None:
    """Shaded silence periods and one dotted line per alert start, in every panel."""
    for start, end in view.silences:
        if end > view.span.start and start < view.span.end:
            figure.add_vrect(x0=max(start, view.span.start), x1=min(end, view.span.end),
                             fillcolor=_SILENCE_FILL, line_width=0, row="all", col=1)  # fmt: skip
    for alert in view.alerts:
        if view.span.start <= alert.since <= view.span.end:
            color = SEVERITY_COLORS.get(str(alert.severity), "#555")
            figure.add_vline(x=alert.since, line_dash="dot", line_color=color, row="all", col=1)
    starts = [a for a in view.alerts if view.span.start <= a.since <= view.span.end]
    if starts and rows:
        figure.add_trace(
            go.Scatter(
                x=[a.since for a in starts], y=[0] * len(starts), mode="markers",
                name="alerts", text=[f"{a.severity}: {a.summary}" for a in starts],
                marker={"symbol": "triangle-down", "size": 11,
                        "color": [SEVERITY_COLORS.get(str(a.severity), "#555") for a in starts]},
                yaxis="y", hovertemplate="%{text}<extra></extra>",
            ),
            row=1, col=1,
        )  # fmt: skip


def measures_figure(view: AssetView) -> go.Figure:
    """One shared-time panel per measure: bucket mean with its min-max band (raw: the points)."""
    titles = [series_title(s) for s in view.series]
    figure = make_subplots(
        rows=max(1, len(titles)), cols=1, shared_xaxes=True,
        subplot_titles=titles or ["no readings in this range"],
        vertical_spacing=0.04 if len(titles) > 4 else 0.08,
    )  # fmt: skip
    for row, series in enumerate(view.series, start=1):
        _add_series(figure, series, row, band=view.span.source != "raw")
    _mark_alerts(figure, view, len(titles))
    figure.update_layout(
        title=f"Asset gateway {view.device}: measures", height=max(320, 200 * len(titles)),
        showlegend=False, margin={"l": 60, "r": 20, "t": 80, "b": 40}, template="plotly_white",
        xaxis={"range": [view.span.start, view.span.end]},
    )  # fmt: skip
    return figure


def hours_figure(days: Sequence[DayHours]) -> go.Figure:
    """Running hours per day as bars, the asset's baseline and the contract as lines."""
    x = [d.day.isoformat() for d in days]
    figure = go.Figure(go.Bar(x=x, y=[d.running for d in days], name="running hours",
                              marker={"color": "#137333"}))  # fmt: skip
    if any(d.baseline is not None for d in days):
        figure.add_trace(go.Scatter(x=x, y=[d.baseline for d in days], name="baseline",
                                    mode="lines+markers", line={"dash": "dash"}))  # fmt: skip
    if any(d.contract is not None for d in days):
        figure.add_trace(go.Scatter(x=x, y=[d.contract for d in days], name="contract",
                                    mode="lines", line={"color": "#b3261e"}))  # fmt: skip
    figure.update_layout(title="Running hours per day", height=320, yaxis={"title": "h"},
                         xaxis={"type": "category"}, template="plotly_white")  # fmt: skip
    return figure


def _range_links(view: AssetView) -> str:
    base = f"/dashboards/devices/{escape(view.device)}"
    links = [f'<a href="{url_with(base, {"range": name})}">{name}</a>' for name in RANGES]
    raw = ""
    if view.span.end - view.span.start <= RANGES["6h"]:
        # the exact end: cut to the second, the newest readings of the range would drop out
        end = view.span.end.isoformat().replace("+00:00", "Z")
        length = next(n for n, d in RANGES.items() if d == view.span.end - view.span.start)
        href = url_with(base, {"range": length, "end": end, "raw": "true"})
        raw = f' · <a id="raw-link" href="{escape(href)}">raw readings of this range</a>'
    return f'<p id="range">{escape(view.span.label)} · {" ".join(links)}{raw}</p>'


def _alert_rows(view: AssetView) -> list[list[str]]:
    return [
        [
            f'<a href="/dashboards/alerts?device={escape(view.device)}">#{a.id}</a>',
            f'<span class="{a.severity}">{a.severity}</span>',
            escape(a.detector), escape(a.status), when(a.since),
            escape(a.explanation()),
        ]
        for a in view.alerts
    ]  # fmt: skip


def _answer(command: CommandRecord) -> str:
    """The gateway's answer (status, detail, result) or the cloud's note."""
    if command.ack_status is None:
        return escape(command.detail or "-")
    result = ", ".join(f"{k}={v}" for k, v in sorted((command.ack_result or {}).items()))
    parts = [command.ack_status, command.ack_detail or "", result]
    return escape(": ".join(p for p in parts if p))


def _commands(view: AssetView) -> str:
    """The newest commands: what, status, who, when, and the gateway's answer."""
    if not view.commands:
        return '<p id="commands" class="note">No commands were sent to this gateway.</p>'
    rows = [
        [
            escape(c.name), f'<span class="{c.status}">{c.status}</span>',
            escape(c.requested_by), when(c.requested_at), when(c.acked_at), _answer(c),
        ]
        for c in view.commands
    ]  # fmt: skip
    return table(["Command", "Status", "Requested by", "Requested", "Answered", "Answer"],
                 rows, "commands")  # fmt: skip


def _health(view: AssetView) -> str:
    h = view.health
    if h is None:
        return '<span id="health" class="note">No health report from this gateway yet.</span>'
    errors = sum(h.sensor_errors.values())
    return (
        f'<span id="health">Reported {when(h.ts)}: up {h.uptime_s / 3600:.1f} h, '
        f"{h.buffer_messages} messages buffered, {h.evicted_messages} evicted, "
        f"{errors} sensor errors.</span>"
    )


def asset_page_html(view: AssetView) -> str:
    """The whole asset page."""
    alerts = table(["Alert", "Severity", "Detector", "Status", "Since", "Why"],
                   _alert_rows(view), "alerts")  # fmt: skip
    content = (
        f'<p><a href="/dashboards/fleet">Fleet</a> · {_health(view)}</p>{_range_links(view)}'
        + figure_div(measures_figure(view), "readings-plot")
        + figure_div(hours_figure(view.days), "hours-plot")
        + f'<p id="contract" class="note">{escape(view.contract_note)}</p>'
        + f"<h2>Alerts</h2>{alerts}"
        + f"<h2>Command history</h2>{_commands(view)}"
    )
    return page(f"LeaseWatch · {view.device}", content)


def device_index_html(devices: Sequence[dict[str, object]]) -> str:
    """The list of gateways with their status, each linking to its asset page."""
    rows = [
        [
            f'<a href="/dashboards/devices/{escape(str(d["device"]))}">'
            f"{escape(str(d['device']))}</a>",
            f'<span class="{escape(str(d["status"]))}">{escape(str(d["status"]))}</span>',
            escape(str(d["latest_reading_at"] or "-")),
            str(d["readings"]),
        ]
        for d in devices
    ]
    listing = table(["Gateway", "Status", "Latest reading", "Readings"], rows)
    return page("LeaseWatch · gateways", listing)
