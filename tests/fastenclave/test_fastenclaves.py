"""FastEnclaves: example apps in the enclave on loopback, one attested proxy per party, plain httpx."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, load_pcr_file, measure
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.errors import KeyFileError
from oblv_mpc.fastenclave import CallingParty
from oblv_mpc.limits import Limits
from oblv_mpc.proxy import Proxy
from oblv_mpc.relay import RecordingRelay
from tests.fastenclave.conftest import LOCAL, PARTIES, ROOT, Enclave, manifest_of, start_enclave
from tests.raw_bodies import Raw


@contextlib.contextmanager
def proxies(
    enclave_url: str, workspace: Path, party_keys: dict[str, keys.PrivateKey], logs: list[str]
) -> Iterator[dict[str, str]]:
    """One attested proxy per party, each on its own loopback port (as `mpc connect --lport`)."""
    loaded = manifest.load(workspace / "s.yaml")
    policy = load_pcr_file(workspace / "enclave-pcrs.yaml")
    with contextlib.ExitStack() as stack:
        urls = {}
        for party in PARTIES:
            http = stack.enter_context(httpx.Client(base_url=enclave_url, timeout=30))
            client = EnclaveClient(http, loaded, party_keys[party], policy, chunk_bytes=1 << 20)
            client.connect()
            proxy = Proxy(client, logs.append, chunk_bytes=256 * 1024)
            urls[party] = stack.enter_context(ServerThread(proxy.app)).url
        yield urls


@pytest.mark.slow
def test_example_apps_through_proxies(workspace: Path, party_keys: dict[str, keys.PrivateKey]) -> None:
    enclave = start_enclave(workspace)
    logs: list[str] = []
    try:
        with proxies(enclave.url, workspace, party_keys, logs) as urls:
            wealth = {"alice": 5_000_000, "bob": 7_250_000, "carol": 6_100_000}
            early = httpx.get(f"{urls['alice']}/millionaires/richest", timeout=30)
            assert early.status_code == 409 and early.json()["detail"]["waiting_for"] == ["alice", "bob", "carol"]
            for party, amount in wealth.items():
                answer = httpx.post(f"{urls[party]}/millionaires/wealth", json={"amount": amount}, timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.json()["submitted"] == party  # the route sees the right party
            # a party cannot submit twice, nor as someone else: identity comes from its key
            again = httpx.post(
                f"{urls['bob']}/millionaires/wealth", json={"amount": 1}, headers={"x-mpc-party": "carol"}, timeout=30
            )
            assert again.status_code == 409 and "bob has already submitted" in again.text
            result = httpx.get(f"{urls['carol']}/millionaires/richest", timeout=30).json()
            assert result == {"richest": ["bob"], "asked_by": "carol"}

            sets = {"alice": ["a", "b", "c", "d"], "bob": ["B", "c", "d", "e"], "carol": [" c", "d", "x"]}
            for party, emails in sets.items():
                csv_text = "email\n" + "".join(f"{e}@example.com\n" for e in emails)
                assert httpx.post(f"{urls[party]}/psi/upload", content=csv_text, timeout=30).status_code == 200
            assert httpx.get(f"{urls['alice']}/psi/cardinality", timeout=30).json() == {"cardinality": 2}
        assert any("bob POST /millionaires/wealth -> 200" in line for line in logs)
        assert not any("7250000" in line for line in logs)  # bodies are never logged
    finally:
        enclave.stop()


def test_a_party_not_in_the_manifest_cannot_use_a_proxy(party_keys: dict[str, keys.PrivateKey], tmp_path: Path) -> None:
    loaded = manifest_of(party_keys)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    app = create_app(loaded, SimulatedNsm(ca, measure()))
    with pytest.raises(KeyFileError, match="belongs to no party"):
        EnclaveClient(TestClient(app), loaded, party_keys["mallory"], ca.policy(measure()))
    # and a request signed by a non-party is refused by the enclave before any route runs
    from oblv_mpc.protocol.envelope import seal_request

    alice = EnclaveClient(TestClient(app), loaded, party_keys["alice"], ca.policy(measure()))
    connection = alice.connect()
    body = {"stream": os.urandom(16), "index": 0, "final": True, "data": b"", "method": "GET", "path": "/x"}
    envelope, _, _ = seal_request(
        connection.context, "http", "mallory", party_keys["mallory"], body, time_ms=int(time.time() * 1000)
    )
    response = TestClient(app).post("/v1/http", content=envelope)
    assert response.status_code == 403 and response.json()["code"] == "unknown_party"


def test_routes_cannot_be_reached_without_a_sealed_request(
    party_keys: dict[str, keys.PrivateKey], tmp_path: Path
) -> None:
    seen: list[str] = []
    router = APIRouter()

    @router.get("/whoami")
    def whoami(party: CallingParty) -> dict[str, str]:
        seen.append(party.name)
        return {"party": party.name}

    loaded = manifest_of(party_keys)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    app = create_app(loaded, SimulatedNsm(ca, measure()), routers=[router])
    http = TestClient(app)
    assert http.get("/whoami").status_code == 404  # user routes are not on the outer app at all
    client = EnclaveClient(http, loaded, party_keys["carol"], ca.policy(measure()))
    proxy = Proxy(client, lambda _line: None)
    answer = TestClient(proxy.app, base_url=LOCAL).get("/whoami", headers={"x-mpc-party": "alice"})
    assert answer.json() == {"party": "carol"}
    assert seen == ["carol"]


def _high_water(pid: int) -> int:
    """The most memory the process has held at once (VmHWM, bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@dataclass
class ProxyProcess:
    """A running `mpc connect --lport 0`; once it stopped, its exit code and stderr."""

    url: str
    pid: int
    returncode: int | None = None
    errors: str = ""


@contextlib.contextmanager
def proxy_process(enclave: Enclave, workspace: Path, party: str, key: keys.PrivateKey) -> Iterator[ProxyProcess]:
    """`mpc connect --lport 0` for ``party`` as a real process, stopped with Ctrl-C (SIGINT) at the end."""
    keys.save_key_pair(key, workspace, party)
    process = subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", "connect", "--url", enclave.url, "--pcr-file", str(enclave.policy_file),
         "--manifest", "s.yaml", "--key", f"{party}_private.der", "--lport", "0"],
        cwd=workspace, env={**os.environ, "MPC_HOME": str(workspace / "home"), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("ready: proxy listening on http://127.0.0.1:"), ready
        proxy = ProxyProcess(ready.split()[4], process.pid)
        yield proxy
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, errors = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()  # not left running past the test
            process.communicate()
            raise
    proxy.returncode, proxy.errors = process.returncode, errors


BODY_BYTES = Limits().max_http_body_bytes - 4 * 2**20  # near the most the enclave takes in one request


@pytest.mark.slow
def test_large_body_streams_through_a_flat_proxy(workspace: Path, party_keys: dict[str, keys.PrivateKey]) -> None:
    """The proxy is a process of its own, as `mpc connect --lport` runs it, so what it holds is
    measured apart from the test's threads and whatever earlier tests left in this process."""
    enclave = start_enclave(workspace)
    line = b"someone.with.a.long.address@example.com\n"
    block = line * (64 * 1024 // len(line))

    def body(size: int) -> Iterator[bytes]:
        yield b"email\n"
        for _ in range(size // len(block)):
            yield block

    try:
        with proxy_process(enclave, workspace, "alice", party_keys["alice"]) as proxy:
            before = _high_water(proxy.pid)
            answer = httpx.post(f"{proxy.url}/psi/upload", content=body(BODY_BYTES), timeout=120)
            assert answer.status_code == 200, answer.text
            assert answer.json()["distinct_emails"] == 1
            held = _high_water(proxy.pid) - before
    finally:
        enclave.stop()
    # A proxy that holds a body grows by at least the body. One that streams it reuses its
    # chunk-sized buffers, which glibc keeps on the heap up to the mmap threshold the process pins
    # (32 MiB, oblv_mpc/runtime.py): measured here, +16 MiB for an 8 MiB body, +30 MiB for 40 MiB,
    # +32 MiB for 60 MiB.
    assert held < BODY_BYTES * 3 // 4, (
        f"the proxy's high water rose by {held / 2**20:.1f} MiB for a {BODY_BYTES / 2**20:.0f} MiB body"
    )


@pytest.mark.slow
def test_proxy_traffic_carries_no_plaintext(workspace: Path, party_keys: dict[str, keys.PrivateKey]) -> None:
    enclave = start_enclave(workspace)
    try:
        with RecordingRelay(enclave.port) as relay, proxies(relay.url, workspace, party_keys, []) as urls:
            secrets = {"alice": 918_273_645, "bob": 564_738_291, "carol": 192_837_465}
            for party, amount in secrets.items():
                assert (
                    httpx.post(f"{urls[party]}/millionaires/wealth", json={"amount": amount}, timeout=30).status_code
                    == 200
                )
            for party in PARTIES:
                csv_text = "email\n" + "".join(f"{party}-secret-{i}@example.com\n" for i in range(50))
                httpx.post(f"{urls[party]}/psi/upload", content=csv_text, timeout=30)
            answer = httpx.get(f"{urls['alice']}/millionaires/richest", timeout=30).text
            httpx.get(f"{relay.url}/v1/info", params={"canary": "plaintext-canary-91c2"}, timeout=30)
        wire = bytes(relay.captured)
        assert b"plaintext-canary-91c2" in wire  # the relay does see plaintext when there is some
        for value in [
            *map(str, secrets.values()),
            "alice-secret-7@example.com",
            "/millionaires/wealth",
            answer,
            '"richest"',
        ]:
            assert value.encode() not in wire, value
    finally:
        enclave.stop()


@pytest.mark.slow
def test_restarted_enclave_is_verified_again_before_anything_is_forwarded(
    workspace: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    enclave = start_enclave(workspace)
    logs: list[str] = []
    try:
        with proxies(enclave.url, workspace, party_keys, logs) as urls:
            assert httpx.post(f"{urls['alice']}/millionaires/wealth", json={"amount": 1}, timeout=30).status_code == 200
            enclave.stop()
            down = httpx.post(f"{urls['alice']}/millionaires/wealth", json={"amount": 2}, timeout=30)
            assert down.status_code == 502
            enclave = start_enclave(workspace, port=enclave.port)  # a restart: new keys, empty state
            first = httpx.post(f"{urls['alice']}/millionaires/wealth", json={"amount": 3}, timeout=30)
            assert first.status_code == 503 and "verified it again" in first.json()["error"]
            assert any("re-verifying before forwarding anything" in line for line in logs)
            assert any(line.startswith("enclave verified: instance") for line in logs)
            retry = httpx.post(f"{urls['alice']}/millionaires/wealth", json={"amount": 3}, timeout=30)
            assert retry.status_code == 200, retry.text  # the new enclave has no earlier submission
    finally:
        enclave.stop()


@pytest.mark.slow
def test_connect_lport_as_a_real_process(workspace: Path, party_keys: dict[str, keys.PrivateKey]) -> None:
    enclave = start_enclave(workspace)
    try:
        with proxy_process(enclave, workspace, "alice", party_keys["alice"]) as proxy:
            answer = httpx.post(f"{proxy.url}/millionaires/wealth", json={"amount": 10}, timeout=30)
            assert answer.json()["submitted"] == "alice"
    finally:
        enclave.stop()
    assert proxy.returncode == 0
    assert "alice POST /millionaires/wealth -> 200" in proxy.errors


def test_proxy_reattests_before_the_leaf_certificate_expires(
    party_keys: dict[str, keys.PrivateKey], tmp_path: Path
) -> None:
    import datetime as dt

    router = APIRouter()

    @router.get("/ping")
    def ping(party: CallingParty) -> dict[str, str]:
        return {"pong": party.name}

    loaded = manifest_of(party_keys)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    app = create_app(loaded, SimulatedNsm(ca, measure()), routers=[router])
    client = EnclaveClient(TestClient(app), loaded, party_keys["bob"], ca.policy(measure()))
    client.connect()
    first = client.connection
    assert first is not None
    now = [dt.datetime.now(dt.UTC)]
    logs: list[str] = []
    proxy = TestClient(Proxy(client, logs.append, clock=lambda: now[0]).app, base_url=LOCAL)
    assert proxy.get("/ping").json() == {"pong": "bob"}
    assert not any(line.startswith("enclave verified") for line in logs)  # still fresh: no re-attestation
    now[0] = first.attestation.leaf_not_after - dt.timedelta(minutes=5)  # within 10 minutes of expiry
    assert proxy.get("/ping").json() == {"pong": "bob"}
    assert any(line.startswith("enclave verified") for line in logs)
    assert client.connection is not first  # a fresh attestation was fetched and verified


def test_unfinished_requests_are_dropped_when_idle(party_keys: dict[str, keys.PrivateKey], tmp_path: Path) -> None:
    import datetime as dt

    from oblv_mpc.enclave import EnclaveService, EnclaveSettings
    from oblv_mpc.limits import Limits

    loaded = manifest_of(party_keys)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    now = [dt.datetime.now(dt.UTC)]
    service = EnclaveService(
        loaded, SimulatedNsm(ca, measure()), EnclaveSettings(limits=Limits(idle_timeout_s=60)), clock=lambda: now[0]
    )
    app = create_app(loaded, service.attestor, service=service)
    client = EnclaveClient(TestClient(app), loaded, party_keys["alice"], ca.policy(measure()), clock=lambda: now[0])
    body = {"stream": os.urandom(16), "index": 0, "final": False, "data": b"x" * 1000, "method": "POST", "path": "/x"}
    assert client.call(Raw("http", body)) == {"received": 0}
    assert service.http_requests.in_progress("alice") == 1
    now[0] += dt.timedelta(seconds=61)
    other = {**body, "stream": os.urandom(16)}
    client.call(Raw("http", other))
    assert service.http_requests.in_progress("alice") == 1  # the idle one is gone: only the new one is left


def test_the_psi_example_takes_one_list_per_party(party_keys: dict[str, keys.PrivateKey]) -> None:
    """Re-posting one email at a time and reading the cardinality would test membership: refused."""
    from examples.psi_service import make_router

    loaded = manifest_of(party_keys)
    ca_dir = Path(os.environ["MPC_HOME"]) / "psi-example-ca"
    ca = DevelopmentCA.load_or_create(ca_dir)
    app = create_app(loaded, SimulatedNsm(ca, measure()), routers=[make_router()])
    client = EnclaveClient(TestClient(app), loaded, party_keys["alice"], ca.policy(measure()))
    proxy = TestClient(Proxy(client, lambda _line: None).app, base_url=LOCAL)
    assert proxy.post("/psi/upload", content="email\nbob-secret@x\n").status_code == 200
    again = proxy.post("/psi/upload", content="email\nanother-guess@x\n")
    assert again.status_code == 409 and "already submitted" in again.text
    waiting = proxy.get("/psi/cardinality")
    assert waiting.status_code == 409 and "bob" in waiting.text  # no answer before every list is in
