"""The whole party flow as real `mpc` processes against `mpc enclave serve` on loopback,
and every failure a user can hit, each with a message that says what to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import Runner
from tests.enclave.conftest import free_port


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    port: int
    pcr_file: Path

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=20)
        return output


def start_server(workspace: Path, *extra: str, port: int = 0) -> Server:
    env = {**os.environ, "MPC_HOME": str(workspace / "home"), "COLUMNS": "200"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oblv_mpc",
            "enclave",
            "serve",
            "--manifest",
            "sessions/s.yaml",
            "--port",
            str(port),
            *extra,
        ],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("ready: listening on "):
            url = line.split()[3]
            return Server(process, url, int(url.rsplit(":", 1)[1]), workspace / "enclave-pcrs.yaml")
    raise AssertionError("the server never said it was ready:\n" + "".join(seen))


@pytest.fixture
def workspace(tmp_path: Path, mpc: Runner) -> Path:
    for party in ("alice", "bob", "carol", "mallory"):
        assert mpc("keygen", party).returncode == 0
    assert mpc("session", "new", "s").returncode == 0
    for party in ("alice", "bob", "carol"):
        assert mpc("session", "add-party", "sessions/s.yaml", party, "--key", f"{party}_public.der").returncode == 0
        done = mpc(
            "session",
            "add-input",
            "sessions/s.yaml",
            f"{party}.people",
            "--column",
            "email:text",
            "--column",
            "age:integer",
            "--key",
            "email",
            *("--unit", "email", "--min-distinct", "2", "--join-column", "email", "--allow", "age:avg"),
        )
        assert done.returncode == 0
    tables = [f"--input={p}.people" for p in ("alice", "bob", "carol")]
    done = mpc(
        "session",
        "add-computation",
        "sessions/s.yaml",
        "overlap",
        "--template",
        "psi_cardinality",
        *tables,
        "--on",
        "email",
        "--reader",
        "alice",
        "--reader",
        "bob",
        "--reader",
        "carol",
    )
    assert done.returncode == 0, done.stderr
    done = mpc(
        "session",
        "add-computation",
        "sessions/s.yaml",
        "ages",
        "--template",
        "aggregate",
        *tables,
        "--aggregate",
        "mean_age=avg:age",
        "--reader",
        "alice",
    )
    assert done.returncode == 0, done.stderr
    rows = {
        "alice": ["a@x", "b@x", "c@x", "d@x"],
        "bob": ["b@x", "c@x", "d@x", "e@x"],
        "carol": ["c@x", "d@x", "f@x"],
    }
    for party, emails in rows.items():
        folder = tmp_path / party
        folder.mkdir()
        (folder / "people.csv").write_text("email,age\n" + "".join(f"{e},{20 + i}\n" for i, e in enumerate(emails)))
    return tmp_path


@pytest.fixture
def server(workspace: Path) -> Iterator[Server]:
    running = start_server(workspace)
    yield running
    if running.process.poll() is None:
        running.stop()


def party(mpc: Runner, workspace: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return mpc(*args, cwd=workspace / name, env={"MPC_HOME": str(workspace / "home")})


def connect(
    mpc: Runner,
    workspace: Path,
    server: Server,
    name: str,
    *extra: str,
    url: str | None = None,
    pcr_file: Path | None = None,
    manifest: str = "../sessions/s.yaml",
    key: str | None = None,
    no_pcr_file: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`mpc connect` as party ``name``; each part can be swapped for a wrong one."""
    pcrs = [] if no_pcr_file else ["--pcr-file", str(pcr_file or server.pcr_file)]
    return party(
        mpc, workspace, name, "connect", "--url", url or server.url, *pcrs,
        "--manifest", manifest, "--key", key or f"../{name}_private.der", *extra,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("count", [2, 3])
def test_whole_flow_as_processes(mpc: Runner, workspace: Path, count: int) -> None:
    if count == 2:  # a two-party session: drop carol from the manifest
        import yaml

        path = workspace / "sessions/s.yaml"
        doc = yaml.safe_load(path.read_text())
        del doc["parties"]["carol"], doc["inputs"]["carol.people"]
        for computation in doc["computations"].values():
            computation["params"]["inputs"].remove("carol.people")
            if "carol" in computation["readers"]:
                computation["readers"].remove("carol")
        path.write_text(yaml.safe_dump(doc))
    running = start_server(workspace)
    try:
        names = ["alice", "bob", "carol"][:count]
        for name in names:
            done = connect(mpc, workspace, running, name)
            assert done.returncode == 0, done.stderr
            assert "attestation verified" in done.stdout
            assert "development enclave" in done.stderr
        for name in names:
            done = party(mpc, workspace, name, "submit", "people.csv", "--table", "people")
            assert done.returncode == 0, done.stderr
            assert "rows accepted" in done.stdout
            assert (workspace / name / ".mpc/receipts" / f"{name}.people.json").exists()
        status = json.loads(party(mpc, workspace, "bob", "status", "--json").stdout)
        assert all(entry["submitted"] for entry in status["inputs"].values())
        fetched = party(mpc, workspace, "alice", "fetch", "overlap", "--json", "-o", "overlap.csv")
        assert fetched.returncode == 0, fetched.stderr
        expected = 3 if count == 2 else 2  # b,c,d common to alice and bob; c,d to all three
        assert json.loads(fetched.stdout)["rows"] == [{"intersection_size": expected}]
        assert (workspace / "alice/overlap.csv").read_text().splitlines() == ["intersection_size", str(expected)]
        ages = json.loads(party(mpc, workspace, "alice", "fetch", "ages", "--json").stdout)
        assert ages["rows"][0]["group_size"] == 8 if count == 2 else 11
        transcript = json.loads(party(mpc, workspace, names[-1], "transcript", "--json").stdout)
        assert [e["kind"] for e in transcript].count("upload") == count
    finally:
        output = running.stop()
    assert running.process.returncode == 0
    assert "enclave stopped" in output


@pytest.mark.slow
def test_failure_paths(mpc: Runner, workspace: Path, server: Server) -> None:
    # no profile yet
    done = party(mpc, workspace, "alice", "status")
    assert done.returncode == 2 and "mpc connect" in done.stderr

    # no PCR policy at all
    done = connect(mpc, workspace, server, "alice", no_pcr_file=True)
    assert done.returncode == 2 and "no PCR policy" in done.stderr

    # wrong PCR file: measurements of some other build
    wrong = workspace / "wrong-pcrs.yaml"
    text = server.pcr_file.read_text()
    start = text.index("pcr0: ") + 6
    wrong.write_text(text[:start] + ("0" if text[start] != "0" else "1") + text[start + 1 :])
    done = connect(mpc, workspace, server, "alice", pcr_file=wrong)
    assert done.returncode == 4 and "PCR0 mismatch" in done.stderr and "do not send it anything" in done.stderr

    # a key that is in no party's entry
    done = connect(mpc, workspace, server, "alice").returncode
    assert done == 0
    mallory = connect(mpc, workspace, server, "alice", key="../mallory_private.der")
    assert mallory.returncode == 3 and "belongs to no party" in mallory.stderr

    # a manifest other than the one the enclave runs
    other = workspace / "sessions/other.yaml"
    other.write_text((workspace / "sessions/s.yaml").read_text().replace("session: s", "session: s2"))
    done = connect(mpc, workspace, server, "bob", manifest=str(other))
    assert done.returncode == 4 and "[manifest]" in done.stderr and "you hold" in done.stderr

    # schema errors: nothing is sent
    (workspace / "alice/bad.csv").write_text("email,age\nz@x,old\n")
    done = party(mpc, workspace, "alice", "submit", "bad.csv", "--table", "people")
    assert done.returncode == 3 and "line 2, column age: expected integer, found 'old'" in done.stderr
    assert "uploading" not in done.stderr
    done = party(mpc, workspace, "alice", "submit", "people.csv", "--table", "orders")
    assert done.returncode == 2 and "not one of your tables" in done.stderr

    # not ready, then not a reader
    done = party(mpc, workspace, "alice", "fetch", "overlap")
    assert done.returncode == 8 and "waiting for" in done.stderr
    assert connect(mpc, workspace, server, "bob").returncode == 0
    done = party(mpc, workspace, "bob", "fetch", "ages")
    assert done.returncode == 7 and "not a reader of ages" in done.stderr

    # the enclave restarted since connect: refused, with what to do
    port = server.port
    server.stop()
    restarted = start_server(workspace, port=port)
    try:
        done = party(mpc, workspace, "alice", "submit", "people.csv", "--table", "people")
        assert done.returncode == 7 and "restarted" in done.stderr and "mpc connect" in done.stderr
    finally:
        restarted.stop()

    # the enclave is not running at all
    done = party(mpc, workspace, "alice", "status")
    assert done.returncode == 6 and "no answer from the enclave" in done.stderr
    done = connect(mpc, workspace, server, "carol", url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 6
    for output in (done.stderr,):
        assert "Traceback" not in output


@pytest.mark.slow
def test_debug_enclave_needs_the_override(mpc: Runner, workspace: Path) -> None:
    running = start_server(workspace, "--debug-mode")
    try:
        done = connect(mpc, workspace, running, "alice")
        assert done.returncode == 4 and "debug mode" in done.stderr and "--allow-debug-enclave" in done.stderr
        done = connect(mpc, workspace, running, "alice", "--allow-debug-enclave")
        assert done.returncode == 0, done.stderr
        assert "debug enclaves are ALLOWED" in done.stderr and "DEBUG enclave" in done.stderr
        # and every later command says so again
        done = party(mpc, workspace, "alice", "status")
        assert done.returncode == 0 and "debug enclaves are ALLOWED" in done.stderr
    finally:
        running.stop()


@pytest.mark.slow
def test_submit_shows_a_progress_bar_in_a_terminal(mpc: Runner, workspace: Path, server: Server) -> None:
    import pty
    import select

    assert connect(mpc, workspace, server, "alice").returncode == 0
    big = workspace / "alice/big.csv"
    big.write_text("email,age\n" + "".join(f"user{i}@example.com,{i % 90}\n" for i in range(300_000)))
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", "submit", "big.csv", "--table", "people"],
        cwd=workspace / "alice",
        env={**os.environ, "MPC_HOME": str(workspace / "home"), "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        screen += data
    process.wait(timeout=30)
    os.close(main)
    text = screen.decode("utf-8", "replace")
    assert process.returncode == 0, text
    assert "uploading big.csv" in text
    assert "MB" in text and ("/s" in text)  # size and transfer speed columns
    assert "━" in text  # the bar itself
    assert "\x1b[" in text  # drawn with terminal control sequences, i.e. live
