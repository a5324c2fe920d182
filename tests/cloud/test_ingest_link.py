"""The ingest link's garbage-collection policy: between batches, never by allocation counts."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.ingest_link import FULL_COLLECTION_EVERY, BetweenBatchesGC


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """Generations collected while the test runs; the interpreter's GC restored after."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()
        gc.enable()


def test_allocations_no_longer_trigger_collections(collections: list[int]) -> None:
    BetweenBatchesGC().start()
    assert not gc.isenabled()
    garbage = [[i] for i in range(50_000)]  # far past any allocation threshold
    del garbage
    assert collections == []
    BetweenBatchesGC().stop()
    assert gc.isenabled()


def test_young_passes_between_batches_and_a_full_one_every_so_often(
    collections: list[int],
) -> None:
    policy = BetweenBatchesGC()
    policy.start()
    for _ in range(2 * FULL_COLLECTION_EVERY):
        policy.collect()
    full = [i for i, generation in enumerate(collections) if generation == 2]
    assert len(collections) == 2 * FULL_COLLECTION_EVERY
    assert full == [FULL_COLLECTION_EVERY - 1, 2 * FULL_COLLECTION_EVERY - 1]
    assert set(collections) == {0, 2}


def test_a_cycle_made_in_a_batch_is_freed_by_the_pass_after_it(collections: list[int]) -> None:
    policy = BetweenBatchesGC()
    policy.start()

    class Node:
        partner: Node | None = None

    a, b = Node(), Node()
    a.partner, b.partner = b, a
    ref = weakref.ref(a)
    del a, b
    assert ref() is not None  # a cycle: reference counting cannot free it, nothing collects
    policy.collect()
    assert collections == [0]
    assert ref() is None
