"""Peer levels computed ahead of the credit checks: at start, and before each UTC midnight.

A group's levels take about a millisecond per member (seconds for thousands of assets); the
peer cache (`cloud.leasing.peers.PeerCache`) serves a later hour of the same day while it
refreshes in the background, so only a group's first check of a day would wait. This task
takes that wait away: when the API starts it computes every known group's levels for the
current hour, and `AHEAD` before each UTC midnight it computes them for the coming midnight
(the levels read whole days before as-of's day, so the last minutes of the day are all they
miss; the first check after 01:00 refreshes them in the background).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud.leasing.peers import known_groups, peer_cache
from cloud.risk.rules import ScoringRules, load_rules
from cloud.settings import CloudSettings

log = structlog.get_logger(__name__)
AHEAD = timedelta(minutes=15)
DAY = timedelta(days=1)


def precompute(engine: Engine, as_of: datetime, rules: ScoringRules) -> int:
    """Every known group's levels for `as_of`'s hour, into the engine's peer cache; how many.

    The groups and their holiday calendars are the rules' (`peers.scope`, `[holidays]`).
    """
    cache = peer_cache(engine)
    holidays = rules.holidays.resolver()
    with engine.connect() as conn:
        groups = known_groups(conn, rules.peers.scope == "tenant")
        for group in groups:
            cache.warm(conn, group, as_of, holidays)
    return len(groups)


def next_run(now: datetime, ahead: timedelta = AHEAD) -> tuple[datetime, datetime]:
    """(when to compute, the midnight to compute for): `ahead` before the next UTC midnight."""
    midnight = datetime.combine(now.astimezone(UTC).date() + DAY, datetime.min.time(), UTC)
    if midnight - ahead <= now:  # already inside the window: do it now
        return now, midnight
    return midnight - ahead, midnight


async def _pass(engine: Engine, as_of: datetime, rules: ScoringRules) -> None:
    started = time.monotonic()
    try:
        groups = await asyncio.to_thread(precompute, engine, as_of, rules)
    except (SQLAlchemyError, ValueError) as err:  # the next pass (or the checks) retry
        log.warning("peer levels not precomputed", as_of=as_of.isoformat(), error=str(err))
        return
    took = round(time.monotonic() - started, 1)
    log.info("peer levels precomputed", as_of=as_of.isoformat(), groups=groups, seconds=took)


async def run_peer_refresh(settings: CloudSettings, engine: Engine, stop: asyncio.Event) -> None:
    """Precompute peer levels now, then before every UTC midnight, until stopped."""
    rules = load_rules(settings.risk_rules_file)
    await _pass(engine, datetime.now(UTC), rules)
    done: datetime | None = None  # the midnight last computed for
    while not stop.is_set():
        now = datetime.now(UTC)
        at, midnight = next_run(now)
        if midnight == done:  # computed already: wait for the next day's window
            at, midnight = next_run(midnight + timedelta(seconds=1))
        if await _stopped(stop, (at - now).total_seconds()):
            return
        await _pass(engine, midnight, rules)
        done = midnight


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; whether `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True
