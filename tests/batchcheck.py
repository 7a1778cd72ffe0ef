"""The oracle of a batch checked at once (`landing.CheckedBatch`): each message checked on its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sixfold.platform.bus import decode


def assert_same_as_one_at_a_time(raws: list[bytes], check_batch: Callable[[list[bytes]], Any],
                                 check_one: Callable[[Any], dict[str, Any]]) -> None:
    """`check_batch(raws)` gives the rows `check_one` gives each message (decoded as the bus decodes it), in
    order, at their positions, and the bad messages with `check_one`'s own reasons."""
    want_rows, want_positions, want_bad = [], [], []
    for position, raw in enumerate(raws):
        try:
            want_rows.append(check_one(decode(raw)))
            want_positions.append(position)
        except ValueError as exc:
            want_bad.append((position, str(exc)))
    table, positions, bad = check_batch(list(raws))
    assert table.to_pylist() == want_rows
    assert positions.to_pylist() == want_positions
    assert bad == want_bad
