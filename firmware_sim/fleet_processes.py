"""Fleet mode over several OS processes, and its progress bar.

One Python process publishes a few thousand messages a second on one core. `--processes N`
splits the gateways over N processes, forked from a `forkserver` that imported fleet mode only
(not the whole command line). Process n publishes every Nth gateway from the nth, so each device
is published by exactly one, with its own `--connections` connections (client ids
`<prefix>-p<n>-<connection>`) and its own part of the report. The processes start the clock
together (a barrier once their gateways are built) and run the same duration; this process
shows their progress and merges their totals and report parts into one report (JSON lines
grouped by process, devices sorted, one summary).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from firmware_sim.fleet import BrokerTarget, FleetError, FleetPlan, FleetShare, run_fleet
from firmware_sim.fleet_report import FleetReport, FleetStats, merged
from firmware_sim.scenarios.encoding import iso
from firmware_sim.scenarios.expand import ResolvedScenario
from firmware_sim.scenarios.run import windows

_START_TIMEOUT_S = 120.0  # for every process to build its gateways


@dataclass(frozen=True)
class _ShareDone:
    """What one process sends back: its totals, the CPU it used, or why it stopped."""

    number: int
    stats: FleetStats
    error: str | None


def _part(report: Path | None, number: int) -> Path | None:
    """Where process `number` writes its share of the report (next to the report)."""
    return None if report is None else report.with_name(f"{report.stem}.p{number}{report.suffix}")


def _publish_share(  # noqa: PLR0917 - a process target's arguments
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    share: tuple[int, int],
    barrier: threading.Barrier,
    progress: SynchronizedArray[Any],
    results: multiprocessing.Queue[_ShareDone],
) -> None:
    """A fleet process: publish its share of the gateways, then send its totals back."""
    began, (number, of) = time.process_time(), share
    own = replace(
        plan, client_prefix=f"{plan.client_prefix}-p{number}", report=_part(plan.report, number)
    )
    report, error = FleetReport(own.report), None

    def ready() -> None:
        """Wait for the other processes; the clock starts when all are ready."""
        try:
            barrier.wait(_START_TIMEOUT_S)
        except threading.BrokenBarrierError as err:
            raise FleetError("another fleet process did not start") from err

    try:
        asyncio.run(
            _run_share(
                resolved,
                target,
                own,
                report,
                share=FleetShare(number, of, ready),
                progress=progress,
            )
        )
    except FleetError as err:
        error = str(err)
    report.stats.shares_cpu_s = time.process_time() - began
    results.put(_ShareDone(number, report.stats, error))


async def _run_share(
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    report: FleetReport,
    *,
    share: FleetShare,
    progress: SynchronizedArray[Any],
) -> None:
    """`run_fleet` for a share, copying its counts to the shared progress array meanwhile."""
    runner = asyncio.create_task(run_fleet(resolved, target, plan, report, share=share))
    slot = 2 * share.number
    while not runner.done():
        await asyncio.wait({runner}, timeout=0.25)
        progress[slot], progress[slot + 1] = report.stats.messages, report.stats.windows_done
    runner.result()


async def run_fleet_processes(
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    report: FleetReport,
    processes: int = 1,
) -> FleetStats:
    """`run_fleet` split over `processes` OS processes; one merged report and totals."""
    if processes == 1:
        return await run_fleet(resolved, target, plan, report)
    if processes < 1:
        raise FleetError("processes must be at least 1")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # forked from a server that imported only this
    barrier, progress = context.Barrier(processes), context.Array("q", 2 * processes)
    results: multiprocessing.Queue[_ShareDone] = context.Queue()
    children = [
        context.Process(
            target=_publish_share,
            args=(resolved, target, plan, (n, processes), barrier, progress, results),
            name=f"lw-fleet-{n}",
        )
        for n in range(processes)
    ]
    report.stats.started = time.monotonic()
    for child in children:
        child.start()
    try:
        done = await _collect(children, results, progress, report.stats, barrier)
    except BaseException:  # cancelled, interrupted or a process lost: stop the others now
        for child in children:
            child.terminate()
        raise
    finally:
        await asyncio.to_thread(_end, children)
    return _merge(report, done)


async def _collect(
    children: list[Any],
    results: multiprocessing.Queue[_ShareDone],
    progress: SynchronizedArray[Any],
    stats: FleetStats,
    barrier: threading.Barrier,
) -> dict[int, _ShareDone]:
    """Wait for every process's totals, showing their progress in `stats` meanwhile."""
    done: dict[int, _ShareDone] = {}
    while len(done) < len(children):
        try:
            share = await asyncio.to_thread(results.get, True, 0.25)
        except queue.Empty:
            stats.messages, stats.windows_done = sum(progress[0::2]), min(progress[1::2])
            lost = [n for n, c in enumerate(children) if c.exitcode is not None and n not in done]
            if lost and not await _late(results, done):
                barrier.abort()
                code = children[lost[0]].exitcode
                raise FleetError(
                    f"fleet process {lost[0]} ended (exit code {code}) without totals"
                ) from None
            continue
        done[share.number] = share
    return done


async def _late(results: multiprocessing.Queue[_ShareDone], done: dict[int, _ShareDone]) -> bool:
    """Take totals still on their way from processes that just ended; whether any came."""
    found = False
    while True:
        try:
            share = await asyncio.to_thread(results.get, True, 1.0)
        except queue.Empty:
            return found
        done[share.number], found = share, True


def _end(children: list[Any]) -> None:
    """Let the processes exit; stop any still running after a few seconds."""
    for child in children:
        child.join(10.0)
        if child.is_alive():
            child.terminate()
            child.join(5.0)


def _merge(report: FleetReport, done: dict[int, _ShareDone]) -> FleetStats:
    """One report and one set of totals from the processes' shares; raise if any failed."""
    shares = [done[n] for n in sorted(done)]
    report.stats = merged([s.stats for s in shares])
    report.stats.shares_cpu_s = sum(s.stats.shares_cpu_s for s in shares)
    if report.path is not None:
        for share in shares:
            part = _part(report.path, share.number)
            if part is not None:
                report.absorb(part)
    report.close()
    if errors := [s.error for s in shares if s.error]:
        raise FleetError("; ".join(dict.fromkeys(errors)))
    return report.stats


async def run_fleet_with_progress(
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    report: FleetReport,
    *,
    show: bool = True,
    processes: int = 1,
) -> FleetStats:
    """`run_fleet_processes` with a progress bar on stderr: messages, rate and simulated time."""
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    total = plan.duration_s or float(windows(resolved))
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not show, auto_refresh=False) as bar:
        task = bar.add_task("fleet", total=total)
        runner = asyncio.create_task(run_fleet_processes(resolved, target, plan, report, processes))
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.5)
            stats = report.stats
            sim_now = resolved.start_ts + stats.windows_done * resolved.scenario.batch_s
            rate = stats.messages / max(stats.elapsed_s, 1e-9)
            done = min(stats.elapsed_s, total) if plan.duration_s else stats.windows_done
            bar.update(
                task,
                completed=done,
                description=f"{stats.messages:,} msgs {rate:,.0f}/s  sim {iso(sim_now)[:16]}",
                refresh=True,  # no refresh thread: it would compete with the publishers
            )
        return runner.result()
