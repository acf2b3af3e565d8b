"""A three-party workspace and `mpc enclave serve` as real processes, for the end-to-end CLI tests.

The workspace (keys, a manifest with two computations, each party's CSV in a folder of its own)
is built by the CLI itself; the enclave runs as `python -m oblv_mpc enclave serve` on a free
loopback port; every party command runs in its party's folder, with its own profile there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def runner_in(root: Path) -> Runner:
    """Run ``python -m oblv_mpc`` as a real process, in ``root`` unless told another folder."""

    def run(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "oblv_mpc", *args],
            cwd=cwd or root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@dataclass
class Server:
    """A running `mpc enclave serve` and how to reach it.

    What it prints is read all along (it logs a line per request: a pipe nobody reads would fill
    and stall it); :meth:`output` and :meth:`stop` return it.
    """

    process: subprocess.Popen[str]
    url: str
    port: int
    pcr_file: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read_on(self) -> Server:
        """Keep reading what the server prints, in a thread, into ``lines``."""
        assert self.process.stdout is not None
        self.reader = threading.Thread(target=self.lines.extend, args=(self.process.stdout,), daemon=True)
        self.reader.start()
        return self

    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(list(self.lines))

    def stop(self) -> str:
        """Ctrl-C, as the operator would; returns what it printed."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=20)
        if self.reader is not None:
            self.reader.join(timeout=20)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.output()


def start_server(workspace: Path, *extra: str, port: int = 0) -> Server:
    """`mpc enclave serve` on the workspace's manifest, once it says it is ready."""
    env = {**os.environ, "MPC_HOME": str(workspace / "home"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "oblv_mpc", "enclave", "serve", "--manifest", "sessions/s.yaml"]
    process = subprocess.Popen(
        [*command, "--port", str(port), *extra],
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
            server = Server(process, url, int(url.rsplit(":", 1)[1]), workspace / "enclave-pcrs.yaml", seen)
            return server.read_on()
    raise AssertionError("the server never said it was ready:\n" + "".join(seen))


PEOPLE = {
    "alice": ["a@x", "b@x", "c@x", "d@x"],
    "bob": ["b@x", "c@x", "d@x", "e@x"],
    "carol": ["c@x", "d@x", "f@x"],
}


def build_workspace(root: Path) -> Path:
    """Keys for alice, bob, carol and mallory; a session of the first three; their CSVs."""
    mpc = runner_in(root)
    for name in ("alice", "bob", "carol", "mallory"):
        assert mpc("keygen", name).returncode == 0
    assert mpc("session", "new", "s").returncode == 0
    for name in ("alice", "bob", "carol"):
        assert mpc("session", "add-party", "sessions/s.yaml", name, "--key", f"{name}_public.der").returncode == 0
        done = mpc(
            "session", "add-input", "sessions/s.yaml", f"{name}.people", "--column", "email:text",
            "--column", "age:integer", "--key", "email",
            "--unit", "email", "--min-distinct", "2", "--join-column", "email", "--allow", "age:avg",
        )  # fmt: skip
        assert done.returncode == 0
    tables = [f"--input={p}.people" for p in ("alice", "bob", "carol")]
    readers = ["--reader", "alice", "--reader", "bob", "--reader", "carol"]
    done = mpc(
        "session", "add-computation", "sessions/s.yaml", "overlap", "--template", "psi_cardinality",
        *tables, "--on", "email", *readers,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = mpc(
        "session", "add-computation", "sessions/s.yaml", "ages", "--template", "aggregate",
        *tables, "--aggregate", "mean_age=avg:age", "--reader", "alice",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name, emails in PEOPLE.items():
        folder = root / name
        folder.mkdir()
        (folder / "people.csv").write_text("email,age\n" + "".join(f"{e},{20 + i}\n" for i, e in enumerate(emails)))
    return root


def party(mpc: Runner, workspace: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """An `mpc` command in the folder ``name`` of the workspace (its profile is there)."""
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
