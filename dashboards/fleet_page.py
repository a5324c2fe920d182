"""The fleet overview: where the assets are, what they do, how much they ran, what is open."""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go

from cloud.alerts.signals import Severity
from dashboards.fleet_data import ASSET_STATES, AssetStatus, FleetFilter, FleetView
from dashboards.layout import (
    SEVERITY_COLORS,
    STATE_COLORS,
    asset_link,
    figure_div,
    page,
    select,
    table,
    url_with,
    when,
)

_ALERT_STATUSES = ("open", "acknowledged")


def status_map(assets: list[AssetStatus]) -> go.Figure:
    """Newest positions on a world projection, one trace per state (base layer served locally)."""
    figure = go.Figure()
    for state in ASSET_STATES:
        placed = [a for a in assets if a.state == state and a.lat is not None]
        if not placed:
            continue
        figure.add_trace(
            go.Scattergeo(
                lat=[a.lat for a in placed],
                lon=[a.lon for a in placed],
                text=[a.device for a in placed],
                customdata=[a.device for a in placed],
                name=state,
                mode="markers",
                marker={"color": STATE_COLORS[state], "size": 7},
                hovertemplate="%{text}<br>%{lat:.4f}, %{lon:.4f}<extra>" + state + "</extra>",
            )
        )
    figure.update_geos(
        projection_type="natural earth", showcountries=True, fitbounds="locations",
        resolution=110, showland=True, landcolor="#f1f3f4",
    )  # fmt: skip
    figure.update_layout(title="Where the assets are (newest position)", height=420,
                         margin={"l": 10, "r": 10, "t": 50, "b": 10})  # fmt: skip
    return figure


def utilization_heatmap(view: FleetView) -> go.Figure:
    """Running hours per asset (rows) and UTC day (columns); a day without data stays blank."""
    devices = [a.device for a in view.assets]
    z = [[view.usage.get(d, {}).get(day) for day in view.days] for d in devices]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[day.isoformat() for day in view.days],
            y=devices,
            colorscale="Greens",
            zmin=0,
            zmax=24,
            colorbar={"title": "h"},
            hovertemplate="%{y} %{x}: %{z:.1f} h running<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"Running hours per day (last {len(view.days)} days)",
        height=max(300, 90 + 18 * len(devices)),
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "category"},
        margin={"l": 110, "r": 20, "t": 50, "b": 60},
    )
    return figure


def state_bars(view: FleetView) -> go.Figure:
    """How many assets run, idle, are off or silent (the whole fleet)."""
    states = list(ASSET_STATES)
    figure = go.Figure(
        go.Bar(
            x=states,
            y=[view.by_state[s] for s in states],
            marker={"color": [STATE_COLORS[s] for s in states]},
            name="assets",
        )
    )
    figure.update_layout(title=f"Assets by state ({view.fleet_size:,} in the fleet)", height=320)
    return figure


def alert_bars(view: FleetView) -> go.Figure:
    """Unresolved alerts by severity, stacked open / acknowledged (the whole fleet)."""
    severities = [str(s) for s in reversed(Severity)]
    figure = go.Figure()
    for status in _ALERT_STATUSES:
        figure.add_trace(
            go.Bar(
                x=severities,
                y=[view.alerts_by_severity.get((s, status), 0) for s in severities],
                name=status,
                marker={"color": [SEVERITY_COLORS[s] for s in severities],
                        "opacity": 1.0 if status == "open" else 0.45},
            )
        )  # fmt: skip
    figure.update_layout(title="Unresolved alerts by severity", barmode="stack", height=320)
    return figure


def _filters(wanted: FleetFilter) -> str:
    severities = [str(s) for s in Severity]
    return (
        '<form class="filters" method="get" action="/dashboards/fleet">'
        + select("state", list(ASSET_STATES), wanted.state, "state")
        + select("severity", severities, wanted.severity, "open alert at least")
        + f'<label>asset <input name="search" id="search" value="{escape(wanted.search)}">'
        f'</label><label>days <input name="days" id="days" type="number" min="1" max="90" '
        f'value="{wanted.days}"></label><button type="submit" id="apply">Apply</button></form>'
    )


def _pager(view: FleetView, wanted: FleetFilter) -> str:
    first = wanted.page * wanted.per_page
    shown = f"assets {first + 1:,}-{first + len(view.assets):,}" if view.assets else "no assets"
    params: dict[str, str | int | None] = {
        "state": wanted.state, "severity": wanted.severity, "search": wanted.search,
        "days": wanted.days, "per_page": wanted.per_page,
    }  # fmt: skip
    links = []
    if wanted.page > 0:
        href = url_with("/dashboards/fleet", {**params, "page": wanted.page - 1})
        links.append(f'<a id="previous" href="{escape(href)}">previous</a>')
    if first + len(view.assets) < view.matching:
        href = url_with("/dashboards/fleet", {**params, "page": wanted.page + 1})
        links.append(f'<a id="next" href="{escape(href)}">next</a>')
    return f'<p id="pager">{shown} of {view.matching:,} matching · {" · ".join(links)}</p>'


def _asset_rows(view: FleetView) -> list[list[str]]:
    return [
        [
            asset_link(a.device),
            f'<span class="{a.state}">{a.state}</span>',
            when(a.latest_reading_at),
            "-" if a.lat is None else f"{a.lat:.4f}, {a.lon:.4f}",
            f'<span class="{a.worst_severity or ""}">{a.open_alerts}</span>',
        ]
        for a in view.assets
    ]


def fleet_page_html(view: FleetView, wanted: FleetFilter) -> str:
    """The whole fleet overview page."""
    summaries = figure_div(state_bars(view), "state-plot") + figure_div(
        alert_bars(view), "alerts-plot"
    )
    assets = figure_div(status_map(view.assets), "map-plot") + figure_div(
        utilization_heatmap(view), "usage-plot"
    )
    listing = table(
        ["Asset", "State", "Latest reading", "Position", "Unresolved alerts"],
        _asset_rows(view),
        "assets",
    )
    content = (
        f'<div class="figures">{summaries}</div>{_filters(wanted)}{_pager(view, wanted)}'
        f'<div class="figures">{assets}</div>{listing}'
    )
    return page("LeaseWatch · fleet", content)
