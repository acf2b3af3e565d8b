"""``mpc enclave serve`` and ``mpc enclave measure``: the local (simulated) enclave."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from oblv_mpc import manifest
from oblv_mpc.attestation import DevelopmentCA, measure, write_pcr_file
from oblv_mpc.attestation.simulator import default_ca_dir
from oblv_mpc.cli._console import err, out, print_json, styled, warn
from oblv_mpc.enclave.attestors import AttestorKind
from oblv_mpc.errors import UsageError
from oblv_mpc.protocol.hpke import SuiteName

app = typer.Typer(help="The enclave service: measure it, serve it.", no_args_is_help=True)

_CA_DIR_HELP = "The development CA's folder (default $MPC_HOME/dev-ca, i.e. ~/.mpc/dev-ca)."


@app.command("measure")
def measure_command(
    output: Path = typer.Option(Path("dev-pcrs.yaml"), "--out", "-o", help="The development PCR file to write."),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", help=_CA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
) -> None:
    """Measure the local enclave app (simulated PCR0-2) and write a development PCR file pinning its root."""
    measurements = measure()
    ca = DevelopmentCA.load_or_create(ca_dir or default_ca_dir())
    write_pcr_file(ca.policy(measurements), output, description="local simulated enclave (development only)")
    data = {
        "pcr0": measurements.pcr0.hex(),
        "pcr1": measurements.pcr1.hex(),
        "pcr2": measurements.pcr2.hex(),
        "files_measured": measurements.files,
        "development_root_sha256": ca.root_sha256,
        "pcr_file": str(output),
    }
    if as_json:
        print_json(data)
    else:
        for key in ("pcr0", "pcr1", "pcr2"):
            out.print(f"{key.upper()} {data[key]}")
    err.print(f"wrote {output} (development root {ca.root_sha256[:16]}..., {measurements.files} files measured)")
    warn("development enclave: these measurements come from the simulator, not from Nitro hardware")


@app.command("serve")
def serve(
    manifest_path: Path | None = typer.Option(None, "--manifest", help="The session manifest every party agreed to."),
    await_manifest: bool = typer.Option(
        False, "--await-manifest", help="Start without a manifest; the operator provisions it (mpc enclave provision)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (TCP)."),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on (0: any free port)."),
    vsock_port: int | None = typer.Option(None, "--vsock-port", help="Listen on this AF_VSOCK port instead of TCP."),
    attestor_kind: AttestorKind = typer.Option(
        AttestorKind.AUTO, "--attestor", help="auto: the NSM if /dev/nsm exists, else the simulator."
    ),
    pcr_out: Path = typer.Option(
        Path("enclave-pcrs.yaml"), "--pcr-out", help="Where to write the development PCR file."
    ),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", help=_CA_DIR_HELP),
    suite: SuiteName = typer.Option(SuiteName.X25519, "--suite", help="HPKE suite for requests."),
    debug_mode: bool = typer.Option(
        False, "--debug-mode", help="Simulate a debug-mode enclave (PCR0-2 all zero), which clients must refuse."
    ),
    apps: list[str] = typer.Option([], "--app", help="module:router of your own FastAPI routes to serve (repeatable)."),
) -> None:
    """Run the bundled enclave app (simulated NSM by default, the real one inside Nitro) and print how to connect."""
    from oblv_mpc.attestation import SimulatedNsm
    from oblv_mpc.enclave import EnclaveSettings, create_app  # the server stack loads only here
    from oblv_mpc.enclave.attestors import choose
    from oblv_mpc.enclave.server import listen, listen_vsock, serve_forever, url_of
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    if (manifest_path is None) == (not await_manifest):
        raise UsageError("give --manifest FILE, or --await-manifest to receive it at launch")
    loaded = manifest.load(manifest_path) if manifest_path is not None else None
    from oblv_mpc.fastenclave import code_location, load_router

    routers = [load_router(spec) for spec in apps]  # their code is measured into PCR0 too
    attestor = choose(
        attestor_kind,
        vsock=vsock_port is not None,
        ca_dir=ca_dir or default_ca_dir(),
        debug=debug_mode,
        apps=[code_location(spec) for spec in apps],
    )
    settings = EnclaveSettings(suite=suite)
    application = create_app(loaded, attestor, settings, routers=routers)
    sock = listen_vsock(vsock_port) if vsock_port is not None else listen(host, port)
    url = url_of(sock)
    if isinstance(attestor, SimulatedNsm):
        measurements = attestor.measurements
        write_pcr_file(attestor.ca.policy(measurements), pcr_out, description="local simulated enclave")
        for index, value in sorted(measurements.as_dict().items()):
            out.print(styled("[bold]PCR{index}[/]          {value}", index=index, value=value.hex()), soft_wrap=True)
        out.print(
            styled(
                "[bold]PCR file[/]      {file} (development root {root}...)",
                file=pcr_out,
                root=attestor.ca.root_sha256[:16],
            )
        )
        warn("development enclave: simulated NSM, no hardware isolation; for trying mpc on one machine")
    else:
        out.print(styled("[bold]attestor[/]      the Nitro Secure Module (/dev/nsm); PCRs are the EIF's (nitro-cli)"))
    if debug_mode:
        warn("DEBUG MODE: PCR0-2 are all zero; clients refuse this enclave unless they allow debug enclaves")
    if loaded is not None:
        out.print(styled("[bold]session[/]       {session}", session=loaded.session))
        out.print(styled("[bold]manifest hash[/] {hash}", hash=loaded.hash))
        out.print("each party connects with:")
        for party in loaded.parties:
            command = ["mpc", "connect", "--url", url, "--pcr-file", str(pcr_out.resolve()), "--manifest",
                       str(manifest_path.resolve()) if manifest_path else "MANIFEST", "--key", f"{party}_private.der",
                       "--party", party]  # fmt: skip
            out.print("  " + shlex.join(command), soft_wrap=True, markup=False)
    else:
        out.print("waiting for the manifest: mpc enclave provision --url URL --manifest FILE", markup=False)
    out.print(f"ready: listening on {url} (Ctrl-C to stop)", markup=False)
    out.file.flush()
    serve_forever(application, sock, settings.limits)
    err.print("enclave stopped; its state (every upload and result) is gone")


@app.command("provision")
def provision(
    url: str = typer.Option(..., "--url", help="The enclave's URL (through the parent's forwarder)."),
    manifest_path: Path = typer.Option(..., "--manifest", help="The session manifest every party agreed to."),
) -> None:
    """Give an enclave started with --await-manifest its session manifest (once per launch)."""
    import httpx

    from oblv_mpc.provisioning import provision as send_manifest

    with httpx.Client(base_url=url, timeout=30) as http:
        provisioned = send_manifest(http, manifest_path)
    out.print(f"provisioned session {provisioned.session}, manifest hash {provisioned.manifest_sha256}")
    err.print("parties verify this hash in every attestation; a different manifest would be refused by them")
