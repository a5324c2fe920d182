"""The risk view: leases and lessees by score and band, the watchlist, reasons, score trends."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import plotly.graph_objects as go

from cloud.risk.model import Band
from dashboards.layout import figure_div, page, select, table, when
from dashboards.risk_data import RiskView, ScoredSubject

BAND_COLORS = {"low": "#137333", "medium": "#e37400", "high": "#d93025", "critical": "#7f1d1d"}


def bands_figure(view: RiskView) -> go.Figure:
    """Leases per band (every scored lease)."""
    names = [str(b) for b in Band]
    figure = go.Figure(
        go.Bar(x=names, y=[view.bands[b] for b in names], name="leases",
               marker={"color": [BAND_COLORS[b] for b in names]})
    )  # fmt: skip
    figure.update_layout(title="Leases by risk band", height=300, template="plotly_white")
    return figure


def trend_figure(view: RiskView) -> go.Figure:
    """Score over time of the riskiest leases (audited scores and band changes)."""
    figure = go.Figure()
    for lease, points in view.trends.items():
        figure.add_trace(
            go.Scatter(x=[t for t, _ in points], y=[s for _, s in points], name=lease,
                       mode="lines+markers")
        )  # fmt: skip
    figure.update_layout(
        title="Score trend of the riskiest leases (0 none, 100 highest concern)",
        height=360, yaxis={"range": [0, 100]}, template="plotly_white",
    )  # fmt: skip
    return figure


def _reasons(reasons: Sequence[dict[str, Any]], top: int = 3) -> str:
    items = "".join(
        f"<li>{escape(str(r.get('summary', '')))} (+{float(r.get('points', 0.0)):.1f})</li>"
        for r in reasons[:top]
    )
    return f"<ul>{items}</ul>" if items else '<span class="note">no reasons recorded</span>'


def _subject_rows(subjects: Sequence[ScoredSubject], kind: str) -> list[list[str]]:
    return [
        [
            escape(x.subject_id) if kind == "lessee" else
            f'{escape(x.subject_id)}<br><span class="note">{escape(x.lessee_id)}</span>',
            f"{x.score:.1f}", f'<span class="band-{x.band}">{escape(x.band)}</span>',
            when(x.as_of), _reasons(x.reasons),
        ]
        for x in subjects
    ]  # fmt: skip


def _watch_rows(view: RiskView) -> list[list[str]]:
    return [
        [
            escape(str(w["lease_id"])), escape(str(w["lessee_id"])),
            f"{escape(str(w['from_band'] or '-'))} → {escape(str(w['to_band']))}",
            f"{w['to_score']:.1f}", when(w["as_of"]), _reasons(w["reasons"], top=2),
        ]
        for w in view.watchlist
    ]  # fmt: skip


def risk_page_html(view: RiskView, band: str | None, lessee: str | None) -> str:
    """The whole risk view."""
    form = (
        '<form class="filters" method="get" action="/dashboards/risk">'
        + select("band", [str(b) for b in Band], band, "band")
        + f'<label>lessee <input name="lessee" id="lessee" value="{escape(lessee or "")}">'
        '</label><button type="submit" id="apply">Apply</button></form>'
    )
    content = (
        figure_div(bands_figure(view), "bands-plot") + form
        + figure_div(trend_figure(view), "trend-plot")
        + "<h2>Watchlist (bands that worsened)</h2>"
        + table(["Lease", "Lessee", "Band", "Score", "As of", "Why"], _watch_rows(view),
                "watchlist")
        + "<h2>Leases by score</h2>"
        + table(["Lease", "Score", "Band", "As of", "Top reasons"],
                _subject_rows(view.leases, "lease"), "leases")
        + "<h2>Lessees by score</h2>"
        + table(["Lessee", "Score", "Band", "As of", "Top reasons"],
                _subject_rows(view.lessees, "lessee"), "lessees")
    )  # fmt: skip
    return page("LeaseWatch · risk", content)
