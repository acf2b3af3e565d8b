"""A restarted enclave must not silently hand out a fresh privacy budget.

The operator restarts the enclave after a differentially private release and the client, as it
says after any restart, would have the parties submit again: then every release could be made
again with new noise, and averaged. Each party's client remembers the spends it saw per manifest
and refuses to feed a new instance of a manifest whose budget was already drawn on, unless the
party passes the explicit, loud override. All as real `mpc` processes against `mpc enclave serve`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Runner
from tests.cli.workspace import connect, party, start_server


@pytest.fixture
def dp_workspace(tmp_path: Path, mpc: Runner) -> Path:
    for name in ("alice", "bob"):
        assert mpc("keygen", name).returncode == 0
        (tmp_path / name).mkdir()
        rows = "".join(f"{name}-{i},{20 + i % 40}\n" for i in range(50))
        (tmp_path / name / "people.csv").write_text("email,age\n" + rows)
    assert mpc("session", "new", "s").returncode == 0
    path = tmp_path / "sessions/s.yaml"
    for name in ("alice", "bob"):
        assert mpc("session", "add-party", "sessions/s.yaml", name, "--key", f"{name}_public.der").returncode == 0
        done = mpc(
            "session", "add-input", "sessions/s.yaml", f"{name}.people", "--column", "email:text",
            "--column", "age:integer", "--key", "email", "--unit", "email", "--min-distinct", "5",
            "--allow", "age:avg", "--allow-dp",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    document = yaml.safe_load(path.read_text())
    document["privacy_budget"] = {"epsilon": 1.0}
    document["computations"] = {
        "mean_age": {
            "template": "aggregate",
            "params": {"inputs": ["alice.people", "bob.people"], "aggregates": {"mean": {"avg": "age"}}},
            "dp": {"epsilon": 1.0, "bounds": {"age": [0, 100]}},
            "readers": ["alice", "bob"],
        }
    }
    path.write_text(yaml.safe_dump(document))
    assert mpc("session", "check", "sessions/s.yaml").returncode == 0
    return tmp_path


@pytest.mark.slow
def test_a_restarted_enclave_does_not_get_a_fresh_budget_silently(mpc: Runner, dp_workspace: Path) -> None:
    server = start_server(dp_workspace)
    try:
        for name in ("alice", "bob"):
            assert connect(mpc, dp_workspace, server, name).returncode == 0
            done = party(mpc, dp_workspace, name, "submit", "people.csv", "--table", "people")
            assert done.returncode == 0, done.stderr
        fetched = party(mpc, dp_workspace, "alice", "fetch", "mean_age")  # spends the whole budget
        assert fetched.returncode == 0, fetched.stderr
        assert party(mpc, dp_workspace, "alice", "status").returncode == 0  # alice's client sees the spend
    finally:
        server.stop()
    restarted = start_server(dp_workspace, port=server.port)
    try:
        assert connect(mpc, dp_workspace, restarted, "alice").returncode == 0
        done = party(mpc, dp_workspace, "alice", "submit", "people.csv", "--table", "people")
        assert done.returncode == 2, done.stderr
        assert "privacy budget was already drawn on by an earlier enclave" in done.stderr
        assert "--allow-fresh-privacy-budget" in done.stderr
        assert "uploading" not in done.stderr  # nothing was sent
        done = party(
            mpc, dp_workspace, "alice", "submit", "people.csv", "--table", "people", "--allow-fresh-privacy-budget"
        )
        assert done.returncode == 0, done.stderr
        assert "WARNING" in done.stderr and "--allow-fresh-privacy-budget" in done.stderr
        # bob never saw a spend (he ran nothing after it): the ledger cannot know, as documented
        assert connect(mpc, dp_workspace, restarted, "bob").returncode == 0
        done = party(mpc, dp_workspace, "bob", "submit", "people.csv", "--table", "people")
        assert done.returncode == 0, done.stderr
    finally:
        restarted.stop()
