"""Red team 13: a non-reader reads a computation's run time from the transcript's clock.

Every party reads the transcript; only a computation's readers may learn its outcome. The
``attempt`` event was recorded when the run started and the reader's ``fetch`` when it ended,
each with the enclave's clock in milliseconds: their difference was the run time, which told
``mal`` (no reader of ``c``) whether hr's run was stopped at the time limit, a fact about hr's
data. A request that waited for the session while the run went on marked its end the same way.
Now every event carries the time its request reached the session.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.enclave import EnclaveSettings
from oblv_mpc.limits import Limits
from oblv_mpc.protocol.transcript import Event
from tests.enclave.red_team_world import Enclave, Keys, outcome, parties

LIMIT_S = 0.5
# A run that others' requests wait for: long enough that they arrive during it on a loaded machine
# (CI runs two whole suites at once on two cores), so their times are arrivals, not its end.
WAITED_LIMIT_S = 2.0
# hr's own computation, read by hr only: quick when hr's value is near the bound, stopped at the limit when not.
COUNT_UP = (
    "WITH RECURSIVE r(n) AS (SELECT x FROM hr.t UNION ALL SELECT n + 1 FROM r WHERE n < 100000000) "
    "SELECT count(*) AS n FROM r"
)


@pytest.fixture(scope="module")
def org_keys() -> Keys:
    return {name: keys.generate() for name in ("hr", "mal")}


def _enclave(org_keys: Keys, ca: DevelopmentCA, m: Measurements, limit_s: float = LIMIT_S) -> Enclave:
    doc = {
        "version": 1,
        "session": "timing",
        "parties": parties(org_keys, "hr", "mal"),
        "inputs": {
            f"{p}.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}} for p in ("hr", "mal")
        },
        "computations": {"c": {"sql": COUNT_UP, "readers": ["hr"]}},
    }
    return Enclave(doc, org_keys, ca, m, EnclaveSettings(limits=Limits(compute_timeout_s=limit_s)))


def _after_attempt(events: list[Event]) -> list[tuple[str, int]]:
    """Each event from the attempt on, with its time relative to the attempt's."""
    start = next(i for i, e in enumerate(events) if e.kind == "attempt")
    return [(e.kind, e.time_ms - events[start].time_ms) for e in events[start:]]


def _world(org_keys: Keys, ca: DevelopmentCA, m: Measurements, hr_value: int) -> tuple[Any, ...]:
    enclave = _enclave(org_keys, ca, m)
    enclave.upload("mal", "t", "x\n1\n")
    enclave.upload("hr", "t", f"x\n{hr_value}\n")
    started = time.monotonic()
    hr_got = outcome(enclave, "hr", "c")
    took = time.monotonic() - started
    seen = _after_attempt(enclave.clients["mal"].transcript())
    return hr_got, took, seen, enclave.readable_by("mal")


def test_a_non_reader_cannot_tell_a_run_stopped_by_the_time_limit_from_the_transcript_clock(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    quick = _world(org_keys, dev_ca, measurements, 99_999_990)
    stopped = _world(org_keys, dev_ca, measurements, 1)
    assert quick[0][0] != "compute_limit" and stopped[0][0] == "compute_limit"  # the worlds differ for hr ...
    assert stopped[1] >= LIMIT_S and stopped[1] > quick[1]  # ... and in run time ...
    assert quick[2] == stopped[2] == [("attempt", 0), ("fetch", 0)]  # ... not in mal's transcript
    assert quick[3] == stopped[3]  # nor in anything else mal reads


def test_a_request_that_waited_for_a_run_does_not_mark_when_it_ended(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """mal's upload, and a request of mal's that is refused, reach the session while hr's run holds it."""
    enclave = _enclave(org_keys, dev_ca, measurements, WAITED_LIMIT_S)
    enclave.upload("hr", "t", "x\n1\n")  # stopped at the time limit
    session = enclave.app.state.enclave.session
    got: dict[str, Any] = {}
    run = threading.Thread(target=lambda: got.update(hr=outcome(enclave, "hr", "c")))
    run.start()
    while not session.events or session.events[-1].kind != "attempt":
        time.sleep(0.001)
    refused = threading.Thread(target=lambda: got.update(mal=outcome(enclave, "mal", "c")))  # not a reader
    refused.start()
    enclave.clients["mal"].upload("t", io.BytesIO(b"x\n2\n"))  # waits for the run to end
    run.join()
    refused.join()
    assert got["hr"][0] == "compute_limit" and got["mal"][0] == "forbidden"
    seen = _after_attempt(enclave.clients["mal"].transcript())
    assert sorted(kind for kind, _ in seen[2:]) == ["refusal", "upload"]
    # Both arrived during the run, which lasted at least the limit: their times say nothing of its end.
    assert all(waited < WAITED_LIMIT_S * 1000 for _, waited in seen[2:])
