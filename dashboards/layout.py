"""The frame of every dashboard page: plotly.js from this server, navigation, tables, forms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

import plotly.graph_objects as go

PLOTLY_JS_URL = "/static/plotly.min.js"
TOPOJSON_URL = "/static/topojson/"
#: plotly config of every figure: no logo, and map base layers from this server (offline)
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "topojsonURL": TOPOJSON_URL}
NAV = (("Fleet", "/dashboards/fleet"), ("Alerts", "/dashboards/alerts"),
       ("Risk", "/dashboards/risk"), ("Gateways", "/dashboards"))  # fmt: skip
STATE_COLORS = {"running": "#137333", "idle": "#e37400", "off": "#5f6368",
                "silent": "#b3261e", "unknown": "#9aa0a6"}  # fmt: skip
SEVERITY_COLORS = {"critical": "#b3261e", "warning": "#e37400", "info": "#1a73e8"}

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}"
    "nav a{margin-right:1rem}h2{margin-top:2rem}"
    "table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}"
    ".online,.running{color:#137333}.offline,.silent,.critical{color:#b3261e}"
    ".idle,.warning{color:#e37400}.info{color:#1a73e8}.note{color:#555}"
    ".figures>div{max-width:1200px}"
    "form.filters label{margin-right:.8rem}"
)


def page(title: str, content: str, *, scripts: str = "") -> str:
    """A whole HTML page: plotly.js from this server (works offline), navigation, content."""
    links = "".join(f'<a href="{href}">{escape(name)}</a>' for name, href in NAV)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style>"
        f'<script src="{PLOTLY_JS_URL}"></script></head>'
        f"<body><nav>{links}</nav><h1>{escape(title)}</h1>{content}{scripts}</body></html>"
    )


def figure_div(figure: go.Figure, div_id: str) -> str:
    """A figure as a div drawn by the page's plotly.js (loaded once in the head)."""
    html: str = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG
    )
    return html


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def asset_link(device: str) -> str:
    """A link to the asset page of a device."""
    return f'<a href="/dashboards/devices/{quote(device)}">{escape(device)}</a>'


def when(ts: datetime | None) -> str:
    """A UTC time to the minute, or a dash."""
    return "-" if ts is None else ts.strftime("%Y-%m-%d %H:%M UTC")


def url_with(path: str, params: dict[str, str | int | None]) -> str:
    """A path with the given query parameters (None ones left out)."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{path}?{query}" if query else path


def select(name: str, options: Sequence[str], chosen: str | None, label: str) -> str:
    """A labelled <select> with an "any" choice first."""
    items = [f'<option value="">any {escape(label)}</option>']
    for option in options:
        mark = " selected" if option == chosen else ""
        items.append(f'<option value="{escape(option)}"{mark}>{escape(option)}</option>')
    choices = "".join(items)
    return f'<label>{escape(label)} <select name="{name}" id="{name}">{choices}</select></label>'
