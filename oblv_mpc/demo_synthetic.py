"""``mpc demo --synthetic``: two hospitals receive a DP synthetic table made from both their rows.

In a temporary folder: a key per hospital, the manifest of ``sessions/hospitals-synthetic.yaml``
(with these keys), each hospital's made-up admissions (some patients admitted several times);
the enclave app with the simulated NSM on a loopback port, reached through a relay that records
every byte; each hospital verifies the attestation and submits its table sealed; one asks for
the release, which the enclave generates in the background while the demo shows its progress;
both fetch the same signed synthetic table; each compares it with its own rows (``mpc synthetic
report``). Finally the relay's recording is searched for the hospitals' values.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure, write_pcr_file
from oblv_mpc.client import EnclaveClient, Result
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.relay import RecordingRelay, csv_values, found_in
from oblv_mpc.synthetic import example, fidelity

COMPUTATION = "admissions_synthetic"


@dataclass(frozen=True)
class SyntheticOutcome:
    """What the demo showed: each hospital's result and fidelity figures, and the wire check."""

    results: dict[str, Result]
    reports: dict[str, fidelity.Report]
    values_checked: int
    values_on_wire: int


def run(
    patients: int, keep: Path | None, say: Callable[[str], None], show: Callable[[str, Result], None]
) -> SyntheticOutcome:
    """Run the synthetic demo with ``patients`` patients per hospital; keep its folder at ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix="mpc-demo-synthetic-"))
    try:
        outcome = _run(folder, patients, say, show)
        if keep is not None:
            if keep.exists():
                shutil.rmtree(keep)
            shutil.copytree(folder, keep)
            say(f"kept keys, manifest, data, PCR file and the synthetic tables in {keep}")
        return outcome
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(
    folder: Path, patients: int, say: Callable[[str], None], show: Callable[[str, Result], None]
) -> SyntheticOutcome:
    from oblv_mpc import result_files
    from oblv_mpc.synthetic import report

    private = {h: keys.generate() for h in example.HOSPITALS}
    files = {h: keys.save_key_pair(private[h], folder / h, h) for h in example.HOSPITALS}
    path = folder / "sessions" / "hospitals-synthetic.yaml"
    path.parent.mkdir(parents=True)
    public = {h: keys.to_base64(k.public_key()) for h, k in private.items()}
    manifest.dump_document(example.hospitals_document(public, rows=2 * patients), path)
    loaded = manifest.load(path)
    spec = loaded.computations[COMPUTATION].synthetic
    assert spec is not None
    say(
        f"manifest: {path.name}, hash {loaded.hash[:16]}...: a synthetic table by {spec.synthesizer} "
        f"{spec.version}, epsilon {spec.epsilon:g}, at most {spec.max_rows_per_unit} admissions per patient"
    )
    data = {}
    for i, h in enumerate(example.HOSPITALS):
        data[h] = example.admissions_csv(folder / h / "admissions.csv", h, patients, seed=i, visits=2)
        say(f"{h}: {patients:,} patients, {2 * patients:,} private admissions in {data[h].relative_to(folder)}")
    ca = DevelopmentCA.load_or_create(folder / "dev-ca")
    measurements = measure()
    policy = ca.policy(measurements)
    write_pcr_file(policy, folder / "enclave-pcrs.yaml", description="demo enclave (development)")
    app = create_app(loaded, SimulatedNsm(ca, measurements))
    results: dict[str, Result] = {}
    reports: dict[str, fidelity.Report] = {}
    with ServerThread(app) as server, RecordingRelay(server.port) as relay:
        say(f"operator: enclave running at {server.url} (simulated NSM); parties reach it through {relay.url}")
        clients = {}
        for h in example.HOSPITALS:
            http = httpx.Client(base_url=relay.url, timeout=60)
            clients[h] = EnclaveClient(http, loaded, keys.load_private_key(files[h].private), policy)
            clients[h].connect()
            say(f"{h}: attestation verified; the enclave has synthesizers {_listed(clients[h].status())}")
        for h in example.HOSPITALS:
            receipt = clients[h].upload("admissions", data[h])
            say(f"{h}: submitted {receipt.rows:,} admissions sealed; signed receipt {receipt.sha256[:16]}...")
        answer = clients["st_mary"].compute(COMPUTATION)
        say(f"st_mary: asked for {COMPUTATION}: {answer['state']} in the background")
        shown: list[int] = []

        def progress(fraction: float, stage: str) -> None:
            if int(fraction * 10) not in shown:
                shown.append(int(fraction * 10))
                say(f"  enclave: {fraction:.0%} {stage}")

        for h in example.HOSPITALS:
            results[h] = clients[h].wait_for_result(COMPUTATION, on_progress=progress, poll_s=0.5)
            show(h, results[h])
            out = folder / h / "synthetic.csv"
            result_files.write(results[h].columns, results[h].rows, out, "csv")
            reports[h] = report.build(out, data[h], (1, 2, 3))
            figures = ", ".join(
                f"{k}-way TVD {mean:.3f} (score {reports[h].score[k]:.0f})" for k, (mean, _) in reports[h].tvd.items()
            )
            say(f"{h}: compared with its own rows (mpc synthetic report): {figures}")
        for client in clients.values():
            client.http.close()
    wire = bytes(relay.captured)
    secrets = csv_values(data.values())
    leaked = len(found_in(wire, secrets))
    say(
        f"operator: recorded {len(wire):,} bytes; of {len(secrets):,} values from the hospitals' files, {leaked} appear"
    )
    return SyntheticOutcome(results, reports, len(secrets), leaked)


def _listed(status: dict[str, object]) -> str:
    listed = status.get("synthesizers")
    if not isinstance(listed, list):
        return "none"
    return ", ".join(f"{s.get('name')} {s.get('version')}" for s in listed if isinstance(s, dict)) or "none"
