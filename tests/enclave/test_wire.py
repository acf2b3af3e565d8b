"""Capture every byte of a whole session on the wire: no uploaded value or result is in it."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.relay import RecordingRelay, csv_values
from tests.enclave.conftest import PARTIES, make_world, serve


def test_the_operator_sees_only_ciphertext(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = make_world(tmp_path, all_keys, dev_ca, measurements, rows=500)
    results = {}
    with (
        serve(world.app) as url,
        RecordingRelay(int(url.rsplit(":", 1)[1])) as relay,
        httpx.Client(base_url=relay.url, timeout=30) as http,
    ):
        world.http = http
        clients = {p: world.client(p, chunk_bytes=4096) for p in PARTIES}
        for p in PARTIES:
            clients[p].upload("employees", world.files[p])
        for name in world.manifest.computations:
            reader = world.manifest.computations[name].readers[0]
            results[name] = clients[reader].result(name)
        clients["alice"].transcript()
        clients["bob"].status()
        http.get("/v1/info", params={"canary": "plaintext-canary-7f3a"})  # proves the capture sees plaintext
    wire = bytes(relay.captured)
    uploaded = sum(f.stat().st_size for f in world.files.values())
    assert len(wire) > uploaded  # the relay saw the whole session
    assert b"plaintext-canary-7f3a" in wire

    secrets = csv_values(world.files.values())
    for result in results.values():
        for row in result.rows:
            for value in row:
                if isinstance(value, str) and len(value) >= 6:
                    secrets.add(value.encode())
                if isinstance(value, float):
                    secrets.add(struct.pack(">d", value))  # as CBOR would carry it
    assert len(secrets) > 1000
    leaked = [s for s in secrets if s in wire]
    assert not leaked, f"{len(leaked)} plaintext values on the wire, e.g. {leaked[:3]}"
    # the harness can see what it looks for: the public column header travels nowhere either
    assert b"id,level,salary" not in wire
