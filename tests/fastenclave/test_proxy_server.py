"""``oblv_mpc.proxy_server.listening``: the proxy's socket is bound first, and refused before anything else."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from oblv_mpc.enclave.server import listen
from oblv_mpc.errors import UsageError
from oblv_mpc.proxy_server import listening


@pytest.fixture
def taken_port() -> Iterator[int]:
    with listen("127.0.0.1", 0) as other:
        yield other.getsockname()[1]


def test_a_port_someone_else_holds_is_refused_with_what_to_do(taken_port: int) -> None:
    with (
        pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{taken_port}") as info,
        listening(port=taken_port),
    ):
        pass
    assert "--lport" in (info.value.hint or "")


def test_the_proxy_listens_on_loopback_only_and_closes_on_exit() -> None:
    with listening(port=0) as listener:
        host, port = listener.sock.getsockname()[:2]
        assert host == "127.0.0.1" and listener.where == f"http://127.0.0.1:{port}"
        assert listener.unix_path is None
    assert listener.sock.fileno() == -1


def test_a_unix_socket_is_owner_only_and_removed_on_exit(folder: Path) -> None:
    path = folder / "p.sock"
    with listening(unix_socket=path) as listener:
        assert listener.where == f"unix:{path}" and listener.unix_path == path
        assert (path.stat().st_mode & 0o777) == 0o600
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            probe.connect(str(path))
    assert not path.exists()


@pytest.mark.parametrize("where", [{}, {"port": 0, "unix_socket": Path("/tmp/x.sock")}])
def test_exactly_one_place_to_listen(where: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="exactly one"), listening(**where):  # type: ignore[arg-type]
        pass
