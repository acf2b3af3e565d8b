"""`mpc connect --lport` and `--unix-socket` as real processes, attacked as a web page would attack them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oblv_mpc import keys
from tests.fastenclave.conftest import ROOT, Enclave, start_enclave

EVIL = {"origin": "https://evil.example", "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}
CSV = b"email\nvictim@example.com\n"


@contextlib.contextmanager
def connect(workspace: Path, enclave: Enclave, *listen: str) -> Iterator[tuple[str, list[str]]]:
    """`mpc connect ... LISTEN` for alice: yields the proxy's address and, once stopped, its stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", "connect", "--url", enclave.url, "--pcr-file", str(enclave.policy_file),
         "--manifest", "s.yaml", "--key", str(workspace / "alice_private.der"), *listen],
        cwd=workspace, env={**os.environ, "MPC_HOME": str(workspace / "home"), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    errors: list[str] = []
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("ready: proxy listening on "), ready + process.communicate(timeout=20)[1]
        yield ready.split()[4], errors
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        errors.append(stderr)
        assert process.returncode == 0, stderr


@pytest.fixture
def alice_workspace(workspace: Path, party_keys: dict[str, keys.PrivateKey]) -> Path:
    keys.save_key_pair(party_keys["alice"], workspace, "alice")
    return workspace


@pytest.mark.slow
def test_connect_lport_refuses_web_pages_and_rebinding_and_serves_curl(alice_workspace: Path) -> None:
    enclave = start_enclave(alice_workspace)
    try:
        with connect(alice_workspace, enclave, "--lport", "0", "--allow-origin", "https://app.example") as (
            url,
            stderr,
        ):
            port = int(url.rsplit(":", 1)[1])
            # a page in alice's browser uploads its own set as alice's: refused, not signed
            page = httpx.post(
                f"{url}/psi/upload", content=CSV, headers={"content-type": "text/plain", **EVIL}, timeout=30
            )
            assert page.status_code == 403 and page.json()["forwarded"] is False
            # the same page after rebinding evil.example to 127.0.0.1: same-origin, so no Origin
            rebound = httpx.post(f"{url}/psi/upload", content=CSV, headers={"host": f"evil.example:{port}"}, timeout=30)
            assert rebound.status_code == 421
            nulled = httpx.post(f"{url}/psi/upload", content=CSV, headers={"origin": "null"}, timeout=30)
            assert nulled.status_code == 403
            # the route never ran for alice: the enclave still waits for her set
            status = httpx.get(f"http://localhost:{port}/psi/cardinality", timeout=30)
            assert status.status_code == 409
            assert status.json()["detail"]["waiting_for"] == ["alice", "bob", "carol"]
            # the page alice allowed may act as her, and read the answer
            allowed = httpx.post(
                f"{url}/psi/upload", content=CSV, headers={"origin": "https://app.example"}, timeout=30
            )
            assert allowed.json() == {"party": "alice", "distinct_emails": 1}
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            if shutil.which("curl"):  # the seed's workflow, unchanged
                done = subprocess.run(
                    ["curl", "-sS", f"http://127.0.0.1:{port}/psi/cardinality"],
                    capture_output=True, text=True, timeout=30, check=True,
                )  # fmt: skip
                assert '"waiting_for":["bob","carol"]' in done.stdout, done.stdout
    finally:
        enclave.stop()
    log = stderr[0]
    assert "WARNING: --allow-origin https://app.example: scripts on pages from https://app.example" in log
    assert "refused POST /psi/upload: requests from web pages are refused: Origin 'https://evil.example'" in log
    assert f"Host 'evil.example:{port}' does not name this proxy" in log
    assert "alice POST /psi/upload -> 200" in log and "for page https://app.example" in log


@pytest.mark.slow
def test_connect_unix_socket_serves_only_its_owner(alice_workspace: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mpc-", dir="/tmp"))  # short: AF_UNIX paths are limited
    path = folder / "alice.sock"
    enclave = start_enclave(alice_workspace)
    try:
        with connect(alice_workspace, enclave, "--unix-socket", str(path)) as (where, stderr):
            assert where == f"unix:{path}"
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
            transport = httpx.HTTPTransport(uds=str(path))
            with httpx.Client(transport=transport, base_url="http://localhost", timeout=30) as proxy:
                answer = proxy.post("/millionaires/wealth", json={"amount": 10})
                assert answer.json()["submitted"] == "alice", answer.text
                page = proxy.post("/millionaires/wealth", json={"amount": 99}, headers=EVIL)
                assert page.status_code == 403
        assert not path.exists()  # removed on Ctrl-C
        assert f"curl --unix-socket {path} http://localhost/" in stderr[0]
    finally:
        enclave.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (["--unix-socket", "{file}"], "exists and is not a socket: refusing to replace it"),
        (["--unix-socket", "{link}"], "is a symbolic link: refusing to replace it"),
        (["--lport", "{taken}"], "cannot listen on 127.0.0.1:"),
        (["--lport", "0", "--unix-socket", "{file}"], "--lport and --unix-socket both given"),
        (["--allow-origin", "https://app.example"], "--allow-origin applies to the local proxy only"),
        (["--lport", "0", "--allow-origin", "null"], "would allow any page"),
    ],
    ids=["a regular file", "a symbolic link", "a taken port", "both", "no proxy", "null origin"],
)
def test_connect_refuses_a_proxy_it_cannot_run_safely_before_doing_anything(
    alice_workspace: Path, listen: list[str], expected: str
) -> None:
    (alice_workspace / "notes.txt").write_text("keep")
    (alice_workspace / "link.sock").symlink_to(alice_workspace / "notes.txt")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        names = {"file": alice_workspace / "notes.txt", "link": alice_workspace / "link.sock"}
        args = [a.format(**names, taken=taken.getsockname()[1]) for a in listen]
        done = subprocess.run(
            [sys.executable, "-m", "oblv_mpc", "connect", "--url", "http://127.0.0.1:9", "--pcr0", "11" * 48,
             "--pcr1", "11" * 48, "--pcr2", "11" * 48, "--manifest", "s.yaml",
             "--key", str(alice_workspace / "alice_private.der"), "--profile", "prof", *args],
            cwd=alice_workspace, env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert expected in " ".join(done.stderr.split()), done.stderr
    assert (alice_workspace / "notes.txt").read_text() == "keep"
    assert not (alice_workspace / "prof").exists()  # nothing done: no profile saved
