"""`mpc fetch NAME -o FILE` of a streamed result, through the real CLI, a loopback enclave and a
hostile path: the file appears complete and verified, or not at all.

The enclave streams every result of more than 10 cells (a small ``max_inline_result_cells``),
in chunks of 1 KiB; a proxy on loopback stands for the operator's network between the reader
and the enclave.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure, write_pcr_file
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from tests.enclave.stream_world import settings

ENV = {"COLUMNS": "200"}
SHARED = 150  # emails both parties hold: the PSI releases them, in several chunks


@dataclass
class Session:
    folder: Path
    url: str
    manifest_path: Path
    pcr_file: Path
    key_files: dict[str, keys.KeyPairFiles]

    def connect(self, cli: Any, party: str, url: str) -> Path:
        profile = self.folder / party / ".mpc"
        done = cli(
            "connect", "--url", url, "--pcr-file", str(self.pcr_file), "--manifest", str(self.manifest_path),
            "--key", str(self.key_files[party].private), "--profile", str(profile), env=ENV,
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        return profile


def _document(public: dict[str, str]) -> dict[str, Any]:
    return {
        "version": 1,
        "session": "streamed",
        "parties": {p: {"public_key": k, "roles": ["contributor", "reader"]} for p, k in public.items()},
        "inputs": {
            f"{p}.people": {"columns": {"email": "text"}, "key": ["email"], "protection": {"release": "unrestricted"}}
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
    key_files, public = {}, {}
    for party in ("alice", "bob"):
        private = keys.generate()
        key_files[party] = keys.save_key_pair(private, tmp_path / party, party)
        public[party] = keys.to_base64(private.public_key())
    manifest_path = tmp_path / "streamed.yaml"
    manifest.dump_document(_document(public), manifest_path)
    loaded = manifest.load(manifest_path)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    measurements = measure()
    pcr_file = tmp_path / "pcrs.yaml"
    write_pcr_file(ca.policy(measurements), pcr_file)
    with ServerThread(create_app(loaded, SimulatedNsm(ca, measurements), settings())) as server:
        for party in ("alice", "bob"):
            emails = [f"shared-{i:03d}@example.com" for i in range(SHARED)] + [
                f"{party}-{i}@example.com" for i in range(40)
            ]
            (tmp_path / party / "people.csv").write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
            with httpx.Client(base_url=server.url, timeout=30) as http:
                private = keys.load_private_key(key_files[party].private)
                EnclaveClient(http, loaded, private, ca.policy(measurements)).upload(
                    "people", tmp_path / party / "people.csv"
                )
        yield Session(tmp_path, server.url, manifest_path, pcr_file, key_files)


Tamper = Callable[[int, bytes], Response | None]  # the n-th answer to POST /v1/result (0: the statement)


def _path(target: str, tamper: Tamper) -> Starlette:
    """The operator's network: forwards everything, and lets ``tamper`` replace result answers."""
    seen = [0]

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=target, timeout=30) as http:
            answer = await http.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            )
        if request.method == "POST" and request.url.path == "/v1/result":
            seen[0] += 1
            forged = tamper(seen[0] - 1, answer.content)
            if forged is not None:
                return forged
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "out" in p.name)


def test_fetch_writes_a_streamed_result_whole_and_the_same_every_time(cli: Any, session: Session) -> None:
    profile = session.connect(cli, "alice", session.url)
    out = session.folder / "alice" / "out.csv"
    done = cli("fetch", "common", "-o", str(out), "--profile", str(profile), env=ENV)
    assert done.exit_code == 0, done.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["email"]  # the PSI lists the common values of its column
    assert sorted(r[0] for r in rows[1:]) == [f"shared-{i:03d}@example.com" for i in range(SHARED)]
    first = out.read_bytes()
    again = cli("fetch", "common", "-o", str(out), "--profile", str(profile), env=ENV)
    assert again.exit_code == 0 and out.read_bytes() == first
    for fmt in ("json", "parquet"):
        target = session.folder / "alice" / f"out.{fmt}"
        assert cli("fetch", "common", "-o", str(target), "--format", fmt, "--profile", str(profile)).exit_code == 0
    assert pq.read_table(session.folder / "alice" / "out.parquet").num_rows == SHARED
    assert _left(session.folder / "alice") == ["out.csv", "out.json", "out.parquet"]  # no partial file


def _flip_middle(n: int, content: bytes) -> Response | None:
    if n != 3:
        return None
    at = len(content) // 2
    return Response(
        content[:at] + bytes([content[at] ^ 1]) + content[at + 1 :], 200, media_type="application/octet-stream"
    )


@pytest.mark.parametrize(
    ("tamper", "code", "words"),
    [
        (_flip_middle, 5, "protocol error"),
        (lambda n, content: Response(b"Bad Gateway", 502) if n >= 3 else None, 6, "HTTP 502"),
        (lambda n, content: Response(b"", 200, media_type="application/octet-stream") if n >= 3 else None, 5, ""),
    ],
    ids=["one byte altered", "chunks dropped with a 502", "chunks emptied"],
)
def test_fetch_through_a_tampering_path_leaves_no_file_and_no_partial_file(
    cli: Any, session: Session, tamper: Tamper, code: int, words: str
) -> None:
    with ServerThread(_path(session.url, tamper)) as path:
        profile = session.connect(cli, "alice", path.url)
        out = session.folder / "alice" / "out.csv"
        done = cli("fetch", "common", "-o", str(out), "--profile", str(profile), env=ENV)
    assert done.exit_code == code, done.output
    assert words.lower() in done.output.lower()
    assert "wrote" not in done.output
    assert _left(session.folder / "alice") == []


def test_a_failed_fetch_leaves_an_earlier_file_as_it_was(cli: Any, session: Session) -> None:
    """The partial file is renamed onto the target only once verified: a good earlier copy survives."""
    out = session.folder / "alice" / "out.csv"
    out.write_text("an earlier result\n", encoding="utf-8")
    with ServerThread(_path(session.url, _flip_middle)) as path:
        profile = session.connect(cli, "alice", path.url)
        done = cli("fetch", "common", "-o", str(out), "--profile", str(profile), env=ENV)
    assert done.exit_code == 5, done.output
    assert out.read_text(encoding="utf-8") == "an earlier result\n"
    assert _left(session.folder / "alice") == ["out.csv"]
