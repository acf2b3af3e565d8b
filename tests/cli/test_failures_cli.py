"""Every failure a user can hit in the party flow, each its own test, each with a message that says what to do.

All as real `mpc` processes against `mpc enclave serve` on loopback. The workspace and one
enclave are shared by the module (building them is most of the cost): alice and bob are
connected once; a failing command changes nothing there (nothing is saved or sent), so the
scenarios cannot hide one another. The two that stop an enclave run their own, with a party
folder of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.workspace import Runner, Server, build_workspace, connect, party, runner_in, start_server
from tests.enclave.conftest import free_port

pytestmark = pytest.mark.slow


@dataclass
class World:
    root: Path
    server: Server
    mpc: Runner


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = build_workspace(tmp_path_factory.mktemp("failures"))
    mpc = runner_in(root)
    server = start_server(root)
    try:
        for name in ("alice", "bob"):
            done = connect(mpc, root, server, name)
            assert done.returncode == 0, done.stderr
        yield World(root, server, mpc)
    finally:
        server.stop()


def _own_folder(world: World, name: str, label: str) -> str:
    """A folder of party ``name``'s own for one test, so its profile touches no other test's."""
    folder = f"{name}-{label}"
    (world.root / folder).mkdir()
    shutil.copy(world.root / name / "people.csv", world.root / folder / "people.csv")
    return folder


def test_a_command_before_connect_says_to_connect(world: World, tmp_path: Path) -> None:
    done = world.mpc("status", cwd=tmp_path, env={"MPC_HOME": str(world.root / "home")})
    assert done.returncode == 2 and "mpc connect" in done.stderr


def test_connect_without_a_pcr_policy_is_refused(world: World) -> None:
    done = connect(world.mpc, world.root, world.server, "carol", no_pcr_file=True)
    assert done.returncode == 2 and "no PCR policy" in done.stderr


def test_measurements_of_another_build_are_refused(world: World) -> None:
    wrong = world.root / "wrong-pcrs.yaml"
    text = world.server.pcr_file.read_text()
    start = text.index("pcr0: ") + 6
    wrong.write_text(text[:start] + ("0" if text[start] != "0" else "1") + text[start + 1 :])
    done = connect(world.mpc, world.root, world.server, "carol", pcr_file=wrong)
    assert done.returncode == 4 and "PCR0 mismatch" in done.stderr and "do not send it anything" in done.stderr


def test_a_key_that_is_in_no_partys_entry_is_refused(world: World) -> None:
    done = connect(world.mpc, world.root, world.server, "carol", key="../mallory_private.der")
    assert done.returncode == 3 and "belongs to no party" in done.stderr


def test_a_manifest_other_than_the_one_the_enclave_runs_is_refused(world: World) -> None:
    other = world.root / "sessions/other.yaml"
    other.write_text((world.root / "sessions/s.yaml").read_text().replace("session: s", "session: s2"))
    done = connect(world.mpc, world.root, world.server, "carol", manifest=str(other))
    assert done.returncode == 4 and "[manifest]" in done.stderr and "you hold" in done.stderr


def test_a_file_that_breaks_the_schema_is_refused_before_anything_is_sent(world: World) -> None:
    (world.root / "alice/bad.csv").write_text("email,age\nz@x,old\n")
    done = party(world.mpc, world.root, "alice", "submit", "bad.csv", "--table", "people")
    assert done.returncode == 3 and "line 2, column age: expected integer, found 'old'" in done.stderr
    assert "uploading" not in done.stderr


def test_a_table_that_is_not_yours_is_refused(world: World) -> None:
    done = party(world.mpc, world.root, "alice", "submit", "people.csv", "--table", "orders")
    assert done.returncode == 2 and "not one of your tables" in done.stderr


def test_a_result_whose_inputs_are_missing_is_not_ready(world: World) -> None:
    done = party(world.mpc, world.root, "alice", "fetch", "overlap")
    assert done.returncode == 8 and "waiting for" in done.stderr


def test_a_party_that_is_no_reader_is_refused_the_result(world: World) -> None:
    done = party(world.mpc, world.root, "bob", "fetch", "ages")
    assert done.returncode == 7 and "not a reader of ages" in done.stderr


def test_an_enclave_restarted_since_connect_is_refused_with_what_to_do(world: World) -> None:
    folder = _own_folder(world, "alice", "restart")
    first = start_server(world.root)
    try:
        assert connect(world.mpc, world.root, first, folder, key="../alice_private.der").returncode == 0
    finally:
        first.stop()
    restarted = start_server(world.root, port=first.port)
    try:
        done = party(world.mpc, world.root, folder, "submit", "people.csv", "--table", "people")
        assert done.returncode == 7 and "restarted" in done.stderr and "mpc connect" in done.stderr
    finally:
        restarted.stop()


def test_an_enclave_that_is_not_running_is_unreachable(world: World) -> None:
    folder = _own_folder(world, "alice", "gone")
    stopped = start_server(world.root)
    try:
        assert connect(world.mpc, world.root, stopped, folder, key="../alice_private.der").returncode == 0
    finally:
        stopped.stop()
    done = party(world.mpc, world.root, folder, "status")
    assert done.returncode == 6 and "no answer from the enclave" in done.stderr


def test_connect_to_an_address_where_nothing_listens_is_unreachable(world: World) -> None:
    done = connect(world.mpc, world.root, world.server, "carol", url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 6 and "Traceback" not in done.stderr
