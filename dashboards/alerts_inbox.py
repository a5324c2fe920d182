"""The alerts inbox: filter alerts, read why each was raised, acknowledge or resolve with a note.

Acknowledge and resolve go through the alerts API (`POST /v1/alerts/{id}/acknowledge|resolve`)
from the page's script, authenticated by the session cookie: the page holds no second path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import plotly.graph_objects as go
from sqlalchemy import Engine, select

from cloud.alerts.records import Alert
from cloud.alerts.signals import Severity
from cloud.schema import alerts
from dashboards.layout import SEVERITY_COLORS, asset_link, figure_div, page, table, when
from dashboards.layout import select as choice

STATUSES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Which alerts the inbox lists."""

    status: str | None = None
    severity: Severity | None = None
    detector: str | None = None
    device: str | None = None
    limit: int = 100


def alerts_figure(alerts: Sequence[Alert]) -> go.Figure:
    """Listed alerts by detector, one stacked bar per severity."""
    counts = Counter((a.detector, str(a.severity)) for a in alerts)
    detectors = sorted({a.detector for a in alerts})
    figure = go.Figure()
    for severity in (str(s) for s in reversed(Severity)):
        figure.add_trace(
            go.Bar(x=detectors, y=[counts.get((d, severity), 0) for d in detectors],
                   name=severity, marker={"color": SEVERITY_COLORS[severity]})
        )  # fmt: skip
    figure.update_layout(title=f"Listed alerts by detector ({len(alerts)})", barmode="stack",
                         height=300, template="plotly_white")  # fmt: skip
    return figure


def _evidence(alert: Alert) -> str:
    items = "".join(
        f"<li><b>{escape(k)}</b>: {escape(json.dumps(v) if not isinstance(v, str) else v)}</li>"
        for k, v in sorted(alert.evidence.items())
    )
    return f'<p class="summary">{escape(alert.summary)}</p><ul class="evidence">{items}</ul>'


def _lifecycle(alert: Alert) -> str:
    parts = [f'<span class="status">{escape(alert.status)}</span>']
    if alert.acknowledged_by:
        note = f": {escape(alert.acknowledge_note)}" if alert.acknowledge_note else ""
        parts.append(f"acknowledged by {escape(alert.acknowledged_by)}{note}")
    if alert.resolved_by:
        note = f": {escape(alert.resolve_note)}" if alert.resolve_note else ""
        parts.append(f"resolved by {escape(alert.resolved_by)}{note}")
    if alert.suppression:
        parts.append(f'<span class="note">{escape(alert.suppression)}</span>')
    return "<br>".join(parts)


def _actions(alert: Alert) -> str:
    if alert.status == "resolved":
        return ""
    ack = (
        f'<button data-action="acknowledge" data-alert="{alert.id}">Acknowledge</button> '
        if alert.status == "open"
        else ""
    )
    return (
        f'<textarea id="note-{alert.id}" rows="2" cols="28" maxlength="1000" '
        f'placeholder="note"></textarea><br>{ack}'
        f'<button data-action="resolve" data-alert="{alert.id}">Resolve</button>'
        f'<div role="status" id="result-{alert.id}"></div>'
    )


def _rows(alerts: Sequence[Alert]) -> list[list[str]]:
    return [
        [
            f"#{a.id}",
            f'<span class="{a.severity}">{a.severity}</span>',
            asset_link(a.device),
            escape(a.detector),
            f"{when(a.since)}<br>opened {when(a.opened_at)}",
            _evidence(a),
            f'<div id="lifecycle-{a.id}">{_lifecycle(a)}</div>',
            _actions(a),
        ]
        for a in alerts
    ]


def _filters(wanted: InboxFilter, detectors: Sequence[str]) -> str:
    return (
        '<form class="filters" method="get" action="/dashboards/alerts">'
        + choice("status", STATUSES, wanted.status, "status")
        + choice("severity", [str(s) for s in Severity], wanted.severity, "severity")
        + choice("detector", detectors, wanted.detector, "detector")
        + f'<label>asset <input name="device" id="device" value="{escape(wanted.device or "")}">'
        '</label><button type="submit" id="apply">Apply</button></form>'
    )


_SCRIPT = """<script>
document.querySelectorAll('button[data-action]').forEach(button => {
  button.addEventListener('click', async () => {
    const id = button.dataset.alert, action = button.dataset.action;
    const out = document.getElementById('result-' + id);
    const note = document.getElementById('note-' + id).value || null;
    const by = document.getElementById('acting-as').value;
    const response = await fetch('/v1/alerts/' + id + '/' + action, {
      method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({by: by, note: note})});
    const body = await response.json();
    if (!response.ok) { out.textContent = 'Refused: ' + body.detail; return; }
    out.textContent = action === 'acknowledge' ? 'Acknowledged.' : 'Resolved.';
    document.querySelector('#lifecycle-' + id + ' .status').textContent = body.status;
    button.disabled = true;
  });
});
</script>"""


def inbox_html(
    alerts: Sequence[Alert], wanted: InboxFilter, detectors: Sequence[str], user: str
) -> str:
    """The whole inbox page; `user` is who acknowledges or resolves from it."""
    listing = table(
        ["Alert", "Severity", "Asset", "Detector", "Since", "Why", "Status", "Act"],
        _rows(alerts),
        "inbox",
    )
    acting = (
        f'<p>Acting as <input id="acting-as" value="{escape(user)}" maxlength="128"> '
        f"· {len(alerts)} alerts listed (newest first, at most {wanted.limit})</p>"
    )
    content = (
        _filters(wanted, detectors) + acting + figure_div(alerts_figure(alerts), "inbox-plot")
        + listing
    )  # fmt: skip
    return page("LeaseWatch · alerts", content, scripts=_SCRIPT)


def known_detectors(engine: Engine) -> list[str]:
    """Every detector that raised an alert, for the filter."""
    with engine.connect() as conn:
        return [str(d) for (d,) in conn.execute(select(alerts.c.detector).distinct())]
