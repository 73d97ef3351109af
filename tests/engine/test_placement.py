"""How the attempts of one decision are split between eager dispatch and the task queue.

What a user relies on: a fan-out still spreads over every worker as round-robin over the
queue's partitions would spread it; only the local worker's share may start at once.
"""

from __future__ import annotations

from collections import Counter

from deerflow.runtime._placement import place


def queued_partitions(attempts: int, free: int, owned: set[int], partitions: int) -> Counter[int]:
    placement = place(attempts, free, frozenset(owned), partitions)
    counts: Counter[int] = Counter()
    for turn in range(attempts - placement.eager):
        among = placement.next_partitions() or range(partitions)
        counts[among[turn % len(among)]] += 1
    return counts


def test_one_worker_owning_every_partition_starts_what_fits_and_queues_the_rest():
    placement = place(33, 4, frozenset(range(4)), 4)
    assert placement.eager == 4
    assert placement.local == 29
    assert list(placement.mine) == [0, 1, 2, 3] and list(placement.others) == []


def test_a_worker_with_half_the_partitions_keeps_half_and_queues_the_other_half_to_the_others():
    placement = place(8, 16, frozenset({0, 1}), 4)
    assert placement.eager == 4 and placement.local == 0
    assert queued_partitions(8, 16, {0, 1}, 4) == Counter({2: 2, 3: 2})


def test_a_busy_worker_queues_the_rest_of_its_share_on_its_own_partitions():
    placement = place(8, 1, frozenset({0, 1}), 4)
    assert placement.eager == 1 and placement.local == 3
    assert queued_partitions(8, 1, {0, 1}, 4) == Counter({0: 2, 1: 1, 2: 2, 3: 2})


def test_a_worker_without_partitions_runs_nothing_eagerly_and_spreads_everything():
    placement = place(12, 16, frozenset(), 4)
    assert placement.eager == 0 and placement.local == 0
    assert queued_partitions(12, 16, set(), 4) == Counter({0: 3, 1: 3, 2: 3, 3: 3})
