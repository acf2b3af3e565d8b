"""The capped CBOR decoder: whatever the bytes, a value within the caps or a ProtocolError, in linear time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc.errors import ProtocolError
from oblv_mpc.limits import CborCaps, Limits
from oblv_mpc.protocol.cbor import check, decode, frame

CAPS = CborCaps(max_bytes=1 << 20, max_depth=8, max_items=1000, max_string_bytes=4096)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

integers = st.integers(-(2**128), 2**128 - 1)  # past 64 bits: bignums, as a HUGEINT result needs
leaves = st.none() | st.booleans() | integers | st.text(max_size=20) | st.binary(max_size=40)
leaves |= st.floats(allow_nan=False)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ
@given(values)
def test_what_the_protocol_sends_decodes_unchanged(value: Any) -> None:
    encoded = cbor2.dumps(value, canonical=True)
    assert decode(encoded, CAPS, "value") == cbor2.loads(encoded)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_a_value_or_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data, CAPS, "fuzz")


@FUZZ
@given(values, st.data())
def test_mutated_encodings_give_a_value_or_a_protocol_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(cbor2.dumps(value, canonical=True))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and position < len(encoded):
            encoded[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            encoded[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        elif action == "delete":
            del encoded[position : position + 1]
        else:
            del encoded[position:]
    with contextlib.suppress(ProtocolError):
        decode(bytes(encoded), CAPS, "mutant")


@FUZZ
@given(st.binary(max_size=512), st.lists(st.integers(0, 600), min_size=1, max_size=4))
def test_a_frame_is_views_within_their_caps_or_a_protocol_error(data: bytes, maxima: list[int]) -> None:
    try:
        parts = frame(data, maxima, "frame")
    except ProtocolError:
        return
    assert len(parts) == len(maxima) and all(len(p) <= m for p, m in zip(parts, maxima, strict=True))


@pytest.mark.parametrize(
    ("encoded", "refusal"),
    [
        (b"\x9a\xff\xff\xff\xff", "declares"),  # 5 bytes that claim 4 billion members
        (b"\x5a\xff\xff\xff\xff", "more than 4096"),  # a string longer than the cap
        (b"\x59\x01\x00" + b"x" * 10, "truncated"),  # a string longer than what follows
        (b"\x81" * 9 + b"\x00", "nested more than 8"),
        (b"\x99\x03\xe9" + b"\x00" * 1001, "more than 1000 items"),
        (b"\xc2\x51" + b"\x01" * 17, "bignum"),  # a 17-byte bignum: past int128
        (b"\xc2\x01", "bignum"),  # a bignum that is no byte string
        (b"\xd8\x1d\x00", "tag"),  # a shared reference (tag 29)
        (b"\xc1\x00", "tag"),  # an epoch date (tag 1)
        (b"\x9f\x00\xff", "indefinite"),
        (b"\x5f\x41\x00\xff", "indefinite"),
        (b"\xf7", "simple value"),  # undefined
        (b"\xf8\x20", "simple value"),
        (b"\x00\x00", "after its end"),
        (b"", "truncated"),
        (b"\xa2\x61a\x00\x61a\x01", "not valid CBOR"),  # a key twice
        (b"\xa1\x01\x00", "not valid CBOR"),  # a key that is not a string
        (b"\x62\xff\xfe", "not valid CBOR"),  # text that is not UTF-8
    ],
    ids=[
        "huge-array",
        "long-string",
        "short-string",
        "deep",
        "many-items",
        "long-bignum",
        "bignum-of-int",
        "shared-ref",
        "epoch-date",
        "indefinite-array",
        "indefinite-bytes",
        "undefined",
        "simple-32",
        "trailing",
        "empty",
        "duplicate-key",
        "int-key",
        "bad-utf8",
    ],
)
def test_each_cap_and_each_forbidden_form_is_refused(encoded: bytes, refusal: str) -> None:
    with pytest.raises(ProtocolError, match=refusal):
        decode(encoded, CAPS, "input")


def test_the_size_cap_is_checked_before_anything_else() -> None:
    with pytest.raises(ProtocolError, match="more than 10"):
        check(b"\x00" * 11, CborCaps(10, 1, 1, 1), "input")


def _seconds(build: Callable[[int], bytes], size: int, caps: CborCaps) -> float:
    data = build(size)
    started = time.perf_counter()
    for _ in range(3):
        with contextlib.suppress(ProtocolError):
            decode(data, caps, "adversarial")
    return (time.perf_counter() - started) / 3


ADVERSARIAL: dict[str, Callable[[int], bytes]] = {
    "empty-maps": lambda n: b"\x9a" + (n - 5).to_bytes(4, "big") + b"\xa0" * (n - 5),
    "nested-arrays": lambda n: b"\x81" * (n - 1) + b"\x00",
    "nested-maps": lambda n: b"\xa1\x60" * (n // 2 - 1) + b"\x00",
    "tiny-strings": lambda n: b"\x9a" + (n - 5).to_bytes(4, "big") + b"\x40" * (n - 5),
    "declared-but-absent": lambda n: (b"\x9b" + (2**63).to_bytes(8, "big")) * (n // 9),
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_adversarial_inputs_cost_linear_time_at_most(shape: str) -> None:
    limits = Limits()
    caps = CborCaps(64 << 20, limits.max_cbor_depth, 10**9, 64 << 20)  # no item cap: the walk itself is timed
    small, large = 1 << 16, 1 << 19  # 8x the bytes
    ratio = _seconds(ADVERSARIAL[shape], large, caps) / max(_seconds(ADVERSARIAL[shape], small, caps), 1e-5)
    assert ratio < 8 * 4, f"{shape}: 8x the bytes took {ratio:.0f}x the time"


def test_the_item_cap_bounds_the_walk_of_a_9mib_body() -> None:
    caps = Limits().request_caps()
    data = ADVERSARIAL["empty-maps"](9 << 20)
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match="items"):
        decode(data, caps, "request body")
    assert time.perf_counter() - started < 0.5
