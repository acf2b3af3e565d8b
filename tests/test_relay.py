"""The operator's search of a recording: exact, and linear in the recording (demo row 13)."""

from __future__ import annotations

import os
import random
import time

from oblv_mpc.relay import found_in


def test_every_value_present_is_found_and_no_other() -> None:
    rng = random.Random(7)
    values = {f"employee-{i},level-{i % 5},{rng.uniform(1e4, 1e5):.2f}".encode() for i in range(2000)}
    values |= {"Zoë-caf\u00e9-42".encode(), b"ab"}  # non-ASCII, and shorter than the window
    planted = sorted(values)[:40]
    wire = bytearray(os.urandom(200_000))
    for value in planted:
        at = rng.randrange(len(wire))
        wire[at:at] = value
    wire += b"\x00ab\x00" + "Zoë-caf\u00e9-42".encode()
    found = found_in(bytes(wire), values)
    assert found == {*planted, b"ab", "Zoë-caf\u00e9-42".encode()}


def test_searching_grows_linearly_with_the_recording() -> None:
    values = {f"secret-value-{i:06d}".encode() for i in range(50_000)}
    times = []
    for size in (2_000_000, 8_000_000):
        wire = os.urandom(size)
        started = time.perf_counter()
        assert found_in(wire, values) == set()
        times.append(time.perf_counter() - started)
    # 4x the bytes: linear is ~4x; per value x byte (the old search) would be ~4x too, but from a
    # base hundreds of times larger: bound the absolute time as well.
    assert times[1] < 5.0, times
    assert times[1] < 8 * max(times[0], 0.01), times
