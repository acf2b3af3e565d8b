"""`--unix-socket`: the proxy on a socket only its owner can connect to, for machines with other users.

Switching users is not possible in a test, so these check what the kernel enforces: the socket's
mode (0600 from the moment it exists, whatever the umask), its owner, and that the proxy never
replaces a file, a symbolic link, a live socket or another user's, nor uses a folder in which
someone else could replace it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from oblv_mpc import keys
from oblv_mpc.errors import UsageError
from oblv_mpc.proxy import UnixListener, listen_unix
from tests.fastenclave.test_proxy_callers import guarded_proxy


@contextlib.contextmanager
def serving(app: ASGIApp, listener: UnixListener) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the proxy did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def test_the_socket_is_owner_only_and_serves_its_owners_programs(
    folder: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    path = folder / "alice.sock"
    with guarded_proxy(party_keys, folder) as proxy:
        listener = listen_unix(path)
        made = os.lstat(path)
        assert stat.S_ISSOCK(made.st_mode) and stat.S_IMODE(made.st_mode) == 0o600
        assert made.st_uid == os.geteuid()
        app = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost", timeout=30)
        with serving(proxy.app, listener), app:
            assert app.post("/act", content=b"hello").json() == {"acted_as": "alice"}
            assert app.get("http://localhost:3030/act").status_code == 200  # a port in the URL is harmless
            # a TCP bridge to the socket (socat) would bring a browser's headers along: still refused
            rebound = app.get("/act", headers={"host": "evil.example:3030"})
            assert rebound.status_code == 421 and "Unix socket" in rebound.json()["error"]
            page = app.post("/act", content=b"x", headers={"origin": "https://evil.example"})
            assert page.status_code == 403
            if shutil.which("curl"):
                done = subprocess.run(
                    ["curl", "-sS", "--unix-socket", str(path), "http://localhost/act"],
                    capture_output=True, text=True, timeout=30, check=True,
                )  # fmt: skip
                assert done.stdout == '{"acted_as":"alice"}'
        assert proxy.calls == [("alice", "POST", b"hello"), ("alice", "GET", b""), ("alice", "GET", b"")]
    assert not path.exists()  # removed when the proxy stops


def test_a_permissive_umask_does_not_open_the_socket_even_briefly(folder: Path) -> None:
    previous = os.umask(0)  # a user whose umask would make new files world-writable
    try:
        listener = listen_unix(folder / "s.sock")
        assert os.umask(0) == 0  # restored after the bind
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.lstat(folder / "s.sock").st_mode) == 0o600
    listener.close()


def test_a_regular_file_at_the_path_is_never_replaced(folder: Path) -> None:
    target = folder / "notes.txt"
    target.write_text("alice's notes")
    with pytest.raises(UsageError, match="exists and is not a socket: refusing to replace it"):
        listen_unix(target)
    assert target.read_text() == "alice's notes"


def test_a_symbolic_link_at_the_path_is_refused(folder: Path) -> None:
    victim = folder / "victim.txt"
    victim.write_text("keep me")
    link = folder / "proxy.sock"
    link.symlink_to(victim)  # planted by someone who wants the proxy to clobber or follow it
    with pytest.raises(UsageError, match="is a symbolic link: refusing"):
        listen_unix(link)
    assert link.is_symlink() and victim.read_text() == "keep me"
    # a link to a real socket is refused too: the socket's mode and owner are the link target's
    real = listen_unix(folder / "real.sock")
    other = folder / "other.sock"
    other.symlink_to(folder / "real.sock")
    with pytest.raises(UsageError, match="symbolic link"):
        listen_unix(other)
    real.close()


def test_a_socket_someone_listens_on_is_not_taken_over(folder: Path) -> None:
    first = listen_unix(folder / "p.sock")
    with pytest.raises(UsageError, match="another process is listening on it"):
        listen_unix(folder / "p.sock")
    first.close()


def test_a_stale_socket_of_ours_is_removed(folder: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(folder / "p.sock"))  # a proxy that was killed left its socket behind
    dead.close()
    listener = listen_unix(folder / "p.sock")
    assert stat.S_IMODE(os.lstat(folder / "p.sock").st_mode) == 0o600
    listener.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_another_users_socket_is_refused(folder: Path) -> None:
    theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.bind(str(folder / "p.sock"))
    theirs.close()
    os.chown(folder / "p.sock", 65534, 65534)
    with pytest.raises(UsageError, match=r"another user \(uid 65534\)"):
        listen_unix(folder / "p.sock")
    assert (folder / "p.sock").exists()


def test_a_folder_where_others_could_replace_the_socket_is_refused(folder: Path) -> None:
    shared = folder / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may unlink our socket and put theirs in its place
    with pytest.raises(UsageError, match="writable by other users"):
        listen_unix(shared / "p.sock")
    assert not (shared / "p.sock").exists()
    shared.chmod(0o1777)  # as /tmp: the sticky bit lets only the owner remove it
    listen_unix(shared / "p.sock").close()


def test_a_replaced_socket_file_is_left_alone_on_exit(folder: Path) -> None:
    listener = listen_unix(folder / "p.sock")
    (folder / "p.sock").unlink()
    (folder / "p.sock").write_text("someone else's now")
    listener.close()
    assert (folder / "p.sock").read_text() == "someone else's now"


def test_a_path_too_long_for_a_socket_is_a_clear_error(folder: Path) -> None:
    with pytest.raises(UsageError, match="cannot listen on"):
        listen_unix(folder / ("x" * 120))
