"""The sequencer: unique, strictly increasing per worker, decodable to its time."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sixfold.platform.ids import Sequencer, first_id_at, id_time

pytestmark = pytest.mark.unit


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=300), st.integers(0, 1023))
def test_ids_strictly_increase_even_when_the_clock_jumps_back(steps, worker):
    now = [1_800_000_000_000]

    def clock() -> int:
        return now[0]

    seq = Sequencer(worker, clock)
    ids = []
    for step in steps:
        now[0] += step
        ids.append(seq.next_id())
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert all((i >> 12) & 1023 == worker for i in ids)


def test_more_than_4096_ids_in_one_millisecond_stay_unique_and_ordered():
    seq = Sequencer(3, lambda: 1_800_000_000_000)
    ids = [seq.next_id() for _ in range(10_000)]
    assert ids == sorted(set(ids))


def test_threads_never_share_an_id():
    seq = Sequencer(1)
    out: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=lambda o=o: o.extend(seq.next_id() for _ in range(5000))) for o in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for o in out for i in o]
    assert len(set(everything)) == 20_000
    assert all(a < b for o in out for a, b in zip(o, o[1:]))


def test_ids_decode_to_their_time_and_cursor_by_time():
    at = datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=timezone.utc)
    seq = Sequencer(7, lambda: int(at.timestamp() * 1000))
    made = seq.next_id()
    assert id_time(made) == at
    assert first_id_at(at) <= made < first_id_at(datetime(2026, 11, 26, 12, 0, 0, 251000, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="worker id"):
        Sequencer(1024)
