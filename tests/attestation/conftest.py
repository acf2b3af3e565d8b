"""Real Nitro documents from ../shared/vectors/nitro (skipped when absent) and a real simulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from oblv_mpc.attestation import AttestationPolicy, DevelopmentCA, Measurements, PcrSet, SimulatedNsm, measure, parse

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "nitro"
PRODUCTION = ("evervault_2.cbor", "evervault_4.cbor", "tagged_evervault_4.cbor")
DEBUG = ("evervault_1.cbor", "evervault_3.cbor", "evervault_5.cbor", "hf-nitrite_1.cbor", "uid2-core_1.cbor")


def vector(name: str) -> bytes:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared Nitro test vectors are not beside this checkout")
    return path.read_bytes()


def own_policy(document: bytes, *, allow_debug: bool = False) -> AttestationPolicy:
    """A policy accepting exactly the document's own PCR0-2."""
    pcrs = parse(document).pcrs
    if not any(pcrs[0]):
        return AttestationPolicy(
            accepted=(PcrSet({i: bytes([9]) * 48 for i in (0, 1, 2)}, "other"),), allow_debug=allow_debug
        )
    return AttestationPolicy(accepted=(PcrSet({i: pcrs[i] for i in (0, 1, 2)}, "own"),), allow_debug=allow_debug)


# The clock every simulated document, certificate and verification in these tests runs on. It is
# injected everywhere (the development CA included), so it is far from any real date on purpose:
# a code path that reads the real clock instead fails here on every day, not on some later one.
EPOCH = dt.datetime(2031, 7, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentCA:
    return DevelopmentCA.load_or_create(tmp_path_factory.mktemp("ca") / "dev-ca", clock=lambda: EPOCH)


@pytest.fixture(scope="session")
def measurements() -> Measurements:
    return measure()


@pytest.fixture
def clock() -> list[dt.datetime]:
    """A settable clock, starting at :data:`EPOCH`: tests move ``clock[0]``."""
    return [EPOCH]


@pytest.fixture
def nsm(dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]) -> SimulatedNsm:
    return SimulatedNsm(dev_ca, measurements, clock=lambda: clock[0])
