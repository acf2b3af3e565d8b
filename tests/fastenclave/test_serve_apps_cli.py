"""`mpc enclave serve --app` as a newcomer meets it (issue 16, rows 10, 11, 12, 15, 27, 28).

One enclave, as a real process, serves a module of the user's that lives in the user's own
folder (not in the checkout) and has a bug; alice reaches it through `mpc connect --lport`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from oblv_mpc import keys
from oblv_mpc.cli import app
from tests.fastenclave.conftest import document_of


@pytest.fixture
def cli() -> Any:
    """`mpc` through Typer's runner, in process."""
    return lambda *args: CliRunner().invoke(app, list(args), catch_exceptions=False)


BUGGY = """
from fastapi import APIRouter
from oblv_mpc.fastenclave import CallingParty

router = APIRouter()


@router.get("/boom")
def boom(party: CallingParty) -> dict[str, str]:
    raise RuntimeError(f"secret row of {party.name}: salary 123456")


@router.post("/echo")
def echo(body: dict[str, int], party: CallingParty) -> dict[str, int]:
    return body
"""


def _session(party_keys: dict[str, keys.PrivateKey]) -> str:
    """The session: three readers; alice also contributes a table."""
    doc = document_of(party_keys)
    doc["parties"]["alice"]["roles"] = ["contributor", "reader"]
    doc["inputs"] = {"alice.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}}}
    return yaml.safe_dump(doc)


def _mpc(*args: str, cwd: Path, home: Path) -> subprocess.Popen[str]:
    """`mpc ...` as a real process in ``cwd``, without the checkout on PYTHONPATH (as a user runs it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", *args],
        cwd=cwd, env={**env, "MPC_HOME": str(home), "COLUMNS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


class Running:
    """A process whose output is read all along, up to a line starting with ``ready``."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)
            if line.startswith("ready: "):
                break
        else:
            process.wait(timeout=30)
            process.stdout.close()
            raise AssertionError("never ready:\n" + "".join(self.lines))
        self.reader = threading.Thread(target=self.lines.extend, args=(process.stdout,), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(list(self.lines))

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        self.reader.join(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.output


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, party_keys: dict[str, keys.PrivateKey]) -> Iterator[Any]:
    """The operator's folder with `buggy.py`, the enclave serving it, and alice's proxy."""
    folder = tmp_path_factory.mktemp("operator")
    (folder / "buggy.py").write_text(BUGGY)
    (folder / "s.yaml").write_text(_session(party_keys))
    keys.save_key_pair(party_keys["alice"], folder, "alice")
    home = folder / "home"
    enclave = Running(_mpc("enclave", "serve", "--manifest", "s.yaml", "--port", "0", "--app", "buggy:router",
                           cwd=folder, home=home))  # fmt: skip
    url = enclave.output.split("ready: listening on ")[1].split()[0]
    proxy = Running(
        _mpc("connect", "--url", url, "--pcr-file", "enclave-pcrs.yaml", "--manifest", "s.yaml",
             "--key", "alice_private.der", "--lport", "0", cwd=folder, home=home)
    )  # fmt: skip
    local = proxy.output.split("ready: proxy listening on ")[1].split()[0]
    try:
        yield folder, home, enclave, proxy, local
    finally:
        proxy.stop()
        enclave.stop()


@pytest.mark.slow
def test_a_route_that_raises_answers_500_through_the_proxy_and_is_logged(served: Any) -> None:
    _, _, enclave, proxy, local = served
    answer = httpx.get(f"{local}/boom", timeout=30)
    assert answer.status_code == 500 and answer.text == "Internal Server Error"  # the route's status, passed through
    fine = httpx.post(f"{local}/echo", json={"x": 1}, timeout=30)
    assert fine.status_code == 200 and fine.json() == {"x": 1}  # the enclave went on
    assert re.search(r"alice GET /boom -> 500 \(", proxy.output), proxy.output  # the proxy's line
    assert "app raised RuntimeError, answered 500" in enclave.output  # the enclave's line: the class only
    assert "secret row" not in enclave.output + proxy.output + answer.text  # never the exception's text


@pytest.mark.slow
def test_serve_lists_the_app_routes_and_logs_each_request_without_bodies(served: Any) -> None:
    _, _, enclave, _, local = served
    httpx.post(f"{local}/echo", json={"salary": 987654}, timeout=30)
    output = enclave.output
    assert "GET /boom  (buggy:router)" in output and "POST /echo  (buggy:router)" in output
    attestation = re.search(r"GET /v1/attestation 200 - [\d,]+ B in, [\d,]+ B out, \d+ ms", output)
    assert attestation is not None, output
    assert re.search(r"POST /v1/http 200 alice [\d,]+ B in, [\d,]+ B out, \d+ ms, app 200", output), output
    assert "nonce=" not in output and "987654" not in output  # no query strings, no bodies


@pytest.mark.slow
def test_measure_with_app_gives_the_pcr0_that_serve_with_app_attests(served: Any) -> None:
    folder, home, enclave, _, _ = served
    served_pcr0 = re.search(r"^PCR0\s+([0-9a-f]{96})$", enclave.output, re.MULTILINE)
    assert served_pcr0 is not None, enclave.output
    measured = _mpc("enclave", "measure", "--app", "buggy:router", "-o", "m.yaml", "--json", cwd=folder, home=home)
    output, _ = measured.communicate(timeout=60)
    assert measured.returncode == 0, output
    data = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert data["pcr0"] == served_pcr0.group(1) and data["apps"] == ["buggy:router"]
    bare = _mpc("enclave", "measure", "-o", "bare.yaml", "--json", cwd=folder, home=home)
    output, _ = bare.communicate(timeout=60)
    assert served_pcr0.group(1) not in output  # without the app, another PCR0


@pytest.mark.slow
def test_the_printed_connect_lines_name_each_partys_own_copies_not_the_operators_paths(served: Any) -> None:
    folder, _, enclave, _, _ = served
    lines = [line.strip() for line in enclave.output.splitlines() if line.strip().startswith("mpc connect")]
    assert [line.split("--party ")[1] for line in lines] == ["alice", "bob", "carol"]
    for line in lines:
        assert "--pcr-file enclave-pcrs.yaml --manifest s.yaml" in line
        assert str(folder) not in line
    assert "its own copies of s.yaml and enclave-pcrs.yaml" in enclave.output


@pytest.mark.slow
def test_debug_mode_prints_the_all_zero_pcrs_it_attests(tmp_path: Path, party_keys: dict[str, keys.PrivateKey]) -> None:
    (tmp_path / "s.yaml").write_text(_session(party_keys))
    enclave = Running(_mpc("enclave", "serve", "--manifest", "s.yaml", "--port", "0", "--debug-mode",
                           cwd=tmp_path, home=tmp_path / "home"))  # fmt: skip
    output = enclave.stop()
    shown = dict(re.findall(r"^(PCR[0-2])\s+([0-9a-f]+)$", output, re.MULTILINE))
    assert shown == {f"PCR{i}": "00" * 48 for i in range(3)}, output
    assert "DEBUG MODE" in output


def test_an_app_module_that_cannot_be_found_says_where_python_looked(
    cli: Any, tmp_path: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    (tmp_path / "s.yaml").write_text(_session(party_keys))
    done = cli("enclave", "serve", "--manifest", str(tmp_path / "s.yaml"), "--app", "nosuch_examples.apps:router")
    assert done.exit_code == 2
    message = " ".join(done.stderr.split())
    assert "cannot import nosuch_examples.apps" in message
    assert "run mpc from the folder that holds nosuch_examples/" in message and "PYTHONPATH" in message


def test_an_app_module_whose_own_import_fails_is_not_blamed_on_the_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, party_keys: dict[str, keys.PrivateKey]
) -> None:
    (tmp_path / "s.yaml").write_text(_session(party_keys))
    (tmp_path / "needs_more_mod.py").write_text("import a_package_nobody_installed\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    done = cli("enclave", "serve", "--manifest", "s.yaml", "--app", "needs_more_mod:router")
    assert done.exit_code == 2
    message = " ".join(done.stderr.split())
    assert "needs_more_mod was found, but importing it failed" in message and "a_package_nobody_installed" in message
