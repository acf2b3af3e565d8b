"""Who may use the local proxy: web pages and DNS rebinding are refused before anything is signed.

The proxy runs on real loopback HTTP in front of the real enclave app; the enclave's route
records every call it runs, and the proxy's enclave client records every request it sends, so
each refusal shows that nothing was sealed, signed or sent.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.errors import UsageError
from oblv_mpc.fastenclave import CallingParty
from oblv_mpc.proxy import Proxy, normalize_origin
from tests.fastenclave.conftest import manifest_of

APP = "https://app.example"


@dataclass
class Guarded:
    """A proxy for alice on a loopback port, and what reached the enclave through it."""

    url: str
    port: int
    app: ASGIApp  # the same proxy, to serve elsewhere (a Unix socket)
    calls: list[tuple[str, str, bytes]] = field(default_factory=list)  # (party, method, body) the route ran for
    sent: list[str] = field(default_factory=list)  # paths the proxy's client sent to the enclave
    logs: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.calls.clear()
        self.sent.clear()
        self.logs.clear()

    def assert_nothing_reached_the_enclave(self) -> None:
        assert self.calls == [], self.calls
        assert self.sent == [], self.sent  # not even sealed and sent to be refused there


def recording_router(calls: list[tuple[str, str, bytes]]) -> APIRouter:
    """A route that records every call the enclave runs, and one that sets its own CORS header."""
    router = APIRouter()

    @router.api_route("/act", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
    async def act(request: Request, party: CallingParty) -> dict[str, str]:
        calls.append((party.name, request.method, await request.body()))
        return {"acted_as": party.name}

    @router.get("/open-to-all")
    def open_to_all(response: Response, party: CallingParty) -> dict[str, str]:
        response.headers["access-control-allow-origin"] = "*"
        return {"acted_as": party.name}

    return router


@contextlib.contextmanager
def guarded_proxy(
    party_keys: dict[str, keys.PrivateKey], folder: Path, allow_origins: tuple[str, ...] = ()
) -> Iterator[Guarded]:
    calls: list[tuple[str, str, bytes]] = []
    loaded = manifest_of(party_keys)
    ca = DevelopmentCA.load_or_create(folder / "ca")
    app = create_app(loaded, SimulatedNsm(ca, measure()), routers=[recording_router(calls)])
    enclave = TestClient(app)
    client = EnclaveClient(enclave, loaded, party_keys["alice"], ca.policy(measure()))
    client.connect()
    logs: list[str] = []
    proxy = Proxy(client, logs.append, allow_origins=allow_origins)
    with ServerThread(proxy.app) as server:
        guarded = Guarded(server.url, server.port, proxy.app, calls, logs=logs)
        enclave.event_hooks["request"] = [lambda request: guarded.sent.append(request.url.path)]
        yield guarded


@pytest.fixture(scope="module")
def _module_proxy(
    party_keys: dict[str, keys.PrivateKey], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    with guarded_proxy(party_keys, tmp_path_factory.mktemp("plain")) as guarded:
        yield guarded


@pytest.fixture
def proxy(_module_proxy: Guarded) -> Guarded:
    _module_proxy.reset()
    return _module_proxy


@pytest.fixture(scope="module")
def _module_proxy_for_app(
    party_keys: dict[str, keys.PrivateKey], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    # written as a user might type it; browsers send "https://app.example"
    with guarded_proxy(party_keys, tmp_path_factory.mktemp("app"), ("HTTPS://App.Example:443/",)) as guarded:
        yield guarded


@pytest.fixture
def app_proxy(_module_proxy_for_app: Guarded) -> Guarded:
    _module_proxy_for_app.reset()
    return _module_proxy_for_app


CROSS_SITE = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "empty"}
WEB_PAGE_REQUESTS = {
    "cross-site text/plain POST (no preflight)": ("POST", {"origin": "https://evil.example", **CROSS_SITE}),
    "POST from a browser without Sec-Fetch": ("POST", {"origin": "https://evil.example"}),
    "null origin (sandboxed iframe, file://)": ("POST", {"origin": "null", **CROSS_SITE}),
    "cross-site GET without Origin (img, script)": ("GET", {**CROSS_SITE, "sec-fetch-dest": "image"}),
    "cross-site link or form navigation": (
        "GET",
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"},
    ),
    "cross-site navigation in an iframe": (
        "GET",
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe"},
    ),
    "another port on 127.0.0.1 (same-site)": ("GET", {**CROSS_SITE, "sec-fetch-site": "same-site"}),
    "another port on 127.0.0.1, with Origin": ("POST", {"origin": "http://127.0.0.1:8080", **CROSS_SITE}),
    "a page the proxy served (same-origin)": ("GET", {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}),
    "a POST claiming to be the user's navigation": (
        "POST",
        {"sec-fetch-site": "none", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"},
    ),
    "a fetch with Sec-Fetch-Site none (an extension)": ("GET", {"sec-fetch-site": "none", "sec-fetch-mode": "cors"}),
    "an unknown Sec-Fetch-Site value": ("GET", {"sec-fetch-site": "None"}),
    "Sec-Fetch-Mode without Sec-Fetch-Site": ("GET", {"sec-fetch-mode": "no-cors"}),
}


@pytest.mark.parametrize(("method", "headers"), WEB_PAGE_REQUESTS.values(), ids=WEB_PAGE_REQUESTS.keys())
def test_requests_from_web_pages_are_not_signed_as_the_party(
    proxy: Guarded, method: str, headers: dict[str, str]
) -> None:
    body = b"email\nattacker@evil.example\n" if method == "POST" else b""
    answer = httpx.request(method, f"{proxy.url}/act", content=body, headers={"content-type": "text/plain", **headers})
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "browser_request" and answer.json()["forwarded"] is False
    assert "access-control-allow-origin" not in answer.headers  # the page cannot even read the refusal
    proxy.assert_nothing_reached_the_enclave()
    assert any(line.startswith(f"refused {method} /act: requests from web pages") for line in proxy.logs)


def test_the_same_text_plain_post_from_the_partys_own_program_is_forwarded(proxy: Guarded) -> None:
    body = b"email\nalice@example.com\n"
    answer = httpx.post(f"{proxy.url}/act", content=body, headers={"content-type": "text/plain"}, timeout=30)
    assert answer.json() == {"acted_as": "alice"}
    assert proxy.calls == [("alice", "POST", body)]


def _rebinding_hosts(port: int) -> list[str]:
    return [
        f"evil.example:{port}",  # DNS rebinding: the page's own name, now resolving to 127.0.0.1
        "evil.example",
        f"127.0.0.1.evil.example:{port}",
        f"localhost.evil.example:{port}",
        f"localhost.:{port}",
        "127.0.0.1",  # no port: not this proxy's address (it is not on port 80)
        f"127.0.0.1:{port + 1}",
        f"127.0.0.2:{port}",
        f"[::1]:{port}",  # it listens on 127.0.0.1 only
        f"0.0.0.0:{port}",
        "",
    ]


def test_dns_rebinding_is_refused_by_the_host_check(proxy: Guarded) -> None:
    for host in _rebinding_hosts(proxy.port):
        answer = httpx.get(f"{proxy.url}/act", headers={"host": host}, timeout=30)  # no Origin: a same-origin GET
        assert answer.status_code == 421, (host, answer.text)
        assert answer.json()["code"] == "wrong_host"
        rebound = httpx.post(
            f"{proxy.url}/act", content=b"x", headers={"host": host, "origin": f"http://{host}"}, timeout=30
        )
        assert rebound.status_code == 421, host
    proxy.assert_nothing_reached_the_enclave()
    assert any(f"Host 'evil.example:{proxy.port}' does not name this proxy" in line for line in proxy.logs)


def test_a_request_without_host_is_refused(proxy: Guarded) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(b"GET /act HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    proxy.assert_nothing_reached_the_enclave()


def test_control_characters_in_a_refused_request_do_not_reach_the_log(proxy: Guarded) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(b"GET /%1b[2K HTTP/1.1\r\nHost: evil.example\xc2\x9b2K\r\nConnection: close\r\n\r\n")
        while raw.recv(65536):
            pass
    assert not any("\x1b" in line or "\x9b" in line for line in proxy.logs), proxy.logs
    assert any(line.startswith("refused GET /\\x1b[2K: Host 'evil.example") for line in proxy.logs), proxy.logs
    proxy.assert_nothing_reached_the_enclave()


@pytest.mark.parametrize(
    "headers",
    [
        {},  # httpx: Host 127.0.0.1:PORT
        {"host": "localhost:{port}"},
        {"host": "LocalHost:{port}"},
        {"sec-fetch-site": "none", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-user": "?1"},
    ],
    ids=["127.0.0.1:PORT", "localhost:PORT", "Host is case-insensitive", "the user typed the address"],
)
def test_the_partys_own_requests_are_forwarded(proxy: Guarded, headers: dict[str, str]) -> None:
    filled = {k: v.format(port=proxy.port) for k, v in headers.items()}
    answer = httpx.get(f"{proxy.url}/act", headers=filled, timeout=30)
    assert answer.status_code == 200, answer.text
    assert proxy.calls == [("alice", "GET", b"")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_as_the_seed_workflow_uses_it(proxy: Guarded) -> None:
    for url in (f"{proxy.url}/act", f"localhost:{proxy.port}/act"):
        done = subprocess.run(
            ["curl", "-sS", "-X", "POST", url, "-H", "content-type: application/json", "-d", '{"amount": 1}'],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert done.stdout == '{"acted_as":"alice"}', done.stdout + done.stderr
    assert [call[:2] for call in proxy.calls] == [("alice", "POST"), ("alice", "POST")]


def test_an_allowed_origin_is_forwarded_and_may_read_the_answer(app_proxy: Guarded) -> None:
    headers = {"origin": APP, "content-type": "text/plain", **CROSS_SITE, "sec-fetch-mode": "cors"}
    answer = httpx.post(f"{app_proxy.url}/act", content=b"hello", headers=headers, timeout=30)
    assert answer.json() == {"acted_as": "alice"}
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["vary"] == "Origin"
    assert app_proxy.calls == [("alice", "POST", b"hello")]
    assert any(line.endswith(f"for page {APP}") for line in app_proxy.logs)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example:8443",  # another port
        "http://app.example",  # another scheme
        "https://app.example.evil.example",  # a suffix
        "https://evil-app.example",
        "https://evil.example",
        "null",
    ],
)
def test_only_the_exact_allowed_origin_is_forwarded(app_proxy: Guarded, origin: str) -> None:
    answer = httpx.post(f"{app_proxy.url}/act", content=b"x", headers={"origin": origin, **CROSS_SITE}, timeout=30)
    assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers
    app_proxy.assert_nothing_reached_the_enclave()


def test_an_allowed_origin_does_not_excuse_a_rebound_host(app_proxy: Guarded) -> None:
    answer = httpx.post(
        f"{app_proxy.url}/act", headers={"origin": APP, "host": f"app.example:{app_proxy.port}"}, timeout=30
    )
    assert answer.status_code == 421
    app_proxy.assert_nothing_reached_the_enclave()


def test_a_second_origin_header_cannot_ride_on_an_allowed_one(app_proxy: Guarded) -> None:
    headers = [("origin", APP), ("origin", "https://evil.example")]
    answer = httpx.post(f"{app_proxy.url}/act", content=b"x", headers=headers, timeout=30)
    assert answer.status_code == 400 and answer.json()["code"] == "ambiguous_request"
    app_proxy.assert_nothing_reached_the_enclave()


def test_a_preflight_from_the_allowed_origin_is_answered_by_the_proxy_alone(app_proxy: Guarded) -> None:
    preflight = {
        "origin": APP,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "content-type, x-request-id",
        "access-control-request-private-network": "true",  # Chrome: a public page reaching loopback
        "sec-fetch-site": "cross-site",
        "sec-fetch-mode": "cors",
    }
    answer = httpx.options(f"{app_proxy.url}/act", headers=preflight)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == APP
    assert "PUT" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == "content-type, x-request-id"
    assert answer.headers["access-control-allow-private-network"] == "true"
    app_proxy.assert_nothing_reached_the_enclave()  # the browser asked, not the page: nothing to sign


def test_a_preflight_from_another_origin_is_refused(app_proxy: Guarded) -> None:
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    answer = httpx.options(f"{app_proxy.url}/act", headers=preflight)
    assert answer.status_code == 403
    assert not [name for name in answer.headers if name.startswith("access-control-")]
    app_proxy.assert_nothing_reached_the_enclave()


def test_a_routes_own_cors_header_does_not_open_the_answer_to_pages(proxy: Guarded) -> None:
    answer = httpx.get(f"{proxy.url}/open-to-all", timeout=30)
    assert answer.json() == {"acted_as": "alice"}
    assert "access-control-allow-origin" not in answer.headers  # the proxy alone decides who reads


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.example", "https://app.example"),
        ("HTTPS://App.Example:443/", "https://app.example"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_allowed_origins_are_compared_as_browsers_send_them(given: str, expected: str) -> None:
    assert normalize_origin(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "null",
        "*",
        "",
        "https://*.example",
        "app.example",
        "ftp://app.example",
        "https://app.example/path",
        "https://app.example?x=1",
        "https://user@app.example",
        "https://exämple.example",
        "https://app.example:99999",
        "file:///home/alice/page.html",
    ],
)
def test_allow_origin_refuses_values_that_are_not_one_exact_origin(given: str) -> None:
    with pytest.raises(UsageError, match="--allow-origin"):
        normalize_origin(given)
