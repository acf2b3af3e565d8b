"""The whole party flow as real `mpc` processes against `mpc enclave serve` on loopback.

Every failure a user can hit, each in a test of its own, is in test_failures_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Runner
from tests.cli.workspace import Server, build_workspace, connect, party, start_server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return build_workspace(tmp_path)


@pytest.fixture
def server(workspace: Path) -> Iterator[Server]:
    running = start_server(workspace)
    yield running
    if running.process.poll() is None:
        running.stop()


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
@pytest.mark.parametrize(
    ("fmt", "first_step"),
    [("arrow", "big.csv is read here with Arrow"), ("csv", "checking big.csv")],  # csv: a bar for the local check too
)
def test_submit_shows_a_progress_bar_in_a_terminal(
    mpc: Runner, workspace: Path, server: Server, fmt: str, first_step: str
) -> None:
    import pty
    import select

    assert connect(mpc, workspace, server, "alice").returncode == 0
    big = workspace / "alice/big.csv"
    big.write_text("email,age\n" + "".join(f"user{i}@example.com,{i % 90}\n" for i in range(300_000)))
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", "submit", "big.csv", "--table", "people", "--format", fmt],
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
    assert first_step in text
    assert "uploading big.csv" in text
    assert "MB" in text and ("/s" in text)  # size and transfer speed columns
    assert "━" in text  # the bar itself
    assert "\x1b[" in text  # drawn with terminal control sequences, i.e. live
