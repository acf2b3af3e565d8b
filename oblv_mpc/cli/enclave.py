"""``mpc enclave serve`` and ``mpc enclave measure``: the local (simulated) enclave."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from oblv_mpc import manifest
from oblv_mpc.attestation import Attestor, DevelopmentCA, measure, write_pcr_file
from oblv_mpc.attestation.simulator import default_ca_dir
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.enclave.attestors import AttestorKind
from oblv_mpc.errors import UsageError
from oblv_mpc.protocol.hpke import SuiteName

if TYPE_CHECKING:
    from fastapi import APIRouter  # loads only where the server runs

app = typer.Typer(help="The enclave service: measure it, serve it.", no_args_is_help=True)

_CA_DIR_HELP = "The development CA's folder (default $MPC_HOME/dev-ca, i.e. ~/.mpc/dev-ca)."


_APP_HELP = "module:router of your own FastAPI routes (repeatable); their code is measured into PCR0 too."


@app.command("measure")
def measure_command(
    output: Path = typer.Option(
        Path("dev-pcrs.yaml"), "--out", "-o", metavar="FILE", help="The development PCR file to write."
    ),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", metavar="DIR", help=_CA_DIR_HELP),
    apps: list[str] = typer.Option([], "--app", metavar="MODULE:ROUTER", help=_APP_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
) -> None:
    """Measure the local enclave app (simulated PCR0-2), with --app routes as `serve --app` runs them, and write a
    development PCR file pinning its root."""
    from oblv_mpc.fastenclave import code_location

    measurements = measure(apps=[code_location(spec) for spec in apps])
    ca = DevelopmentCA.load_or_create(ca_dir or default_ca_dir())
    with_apps = f" with {', '.join(apps)}" if apps else ""
    write_pcr_file(
        ca.policy(measurements), output, description=f"local simulated enclave{with_apps} (development only)"
    )
    data = {
        "pcr0": measurements.pcr0.hex(),
        "pcr1": measurements.pcr1.hex(),
        "pcr2": measurements.pcr2.hex(),
        "files_measured": measurements.files,
        "apps": apps,
        "development_root_sha256": ca.root_sha256,
        "pcr_file": str(output),
    }
    if as_json:
        print_json(data)
    else:
        for key in ("pcr0", "pcr1", "pcr2"):
            out.print(f"{key.upper()} {data[key]}", soft_wrap=True)
    err.print(f"wrote {output} (development root {ca.root_sha256[:16]}..., {measurements.files} files measured)")
    warn("development enclave: these measurements come from the simulator, not from Nitro hardware")


@app.command("serve")
def serve(
    manifest_path: Path | None = typer.Option(
        None, "--manifest", metavar="FILE", help="The session manifest every party agreed to."
    ),
    await_manifest: bool = typer.Option(
        False, "--await-manifest", help="Start without a manifest; the operator provisions it (mpc enclave provision)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on (TCP)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", help="TCP port to listen on (0: any free port)."),
    vsock_port: int | None = typer.Option(
        None, "--vsock-port", metavar="PORT", help="Listen on this AF_VSOCK port instead of TCP."
    ),
    attestor_kind: AttestorKind = typer.Option(
        AttestorKind.AUTO, "--attestor", help="auto: the NSM if /dev/nsm exists, else the simulator."
    ),
    pcr_out: Path = typer.Option(
        Path("enclave-pcrs.yaml"), "--pcr-out", metavar="FILE", help="Where to write the development PCR file."
    ),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", metavar="DIR", help=_CA_DIR_HELP),
    suite: SuiteName = typer.Option(SuiteName.X25519, "--suite", help="HPKE suite for requests."),
    debug_mode: bool = typer.Option(
        False, "--debug-mode", help="Simulate a debug-mode enclave (PCR0-2 all zero), which clients must refuse."
    ),
    apps: list[str] = typer.Option([], "--app", metavar="MODULE:ROUTER", help=_APP_HELP),
) -> None:
    """Run the bundled enclave app (simulated NSM by default, the real one inside Nitro) and print how to connect."""
    from oblv_mpc.enclave import EnclaveSettings, create_app  # the server stack loads only here
    from oblv_mpc.enclave.attestors import choose
    from oblv_mpc.enclave.server import listen, listen_vsock, serve_forever, url_of
    from oblv_mpc.fastenclave import code_location, load_router
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    if (manifest_path is None) == (not await_manifest):
        raise UsageError("give --manifest FILE, or --await-manifest to receive it at launch")
    loaded = manifest.load(manifest_path) if manifest_path is not None else None
    routers = [load_router(spec) for spec in apps]  # their code is measured into PCR0 too
    attestor = choose(
        attestor_kind,
        vsock=vsock_port is not None,
        ca_dir=ca_dir or default_ca_dir(),
        debug=debug_mode,
        apps=[code_location(spec) for spec in apps],
    )
    settings = EnclaveSettings(suite=suite)
    application = create_app(loaded, attestor, settings, routers=routers, log=lambda line: err.print(plain(line)))
    sock = listen_vsock(vsock_port) if vsock_port is not None else listen(host, port)
    url = url_of(sock)
    _print_measurements(attestor, pcr_out, debug=debug_mode)
    _print_routes(apps, routers)
    if loaded is not None and manifest_path is not None:
        _print_connect_lines(loaded, url, manifest_path, pcr_out)
    else:
        out.print("waiting for the manifest: mpc enclave provision --url URL --manifest FILE", markup=False)
    out.print(f"ready: listening on {url} (Ctrl-C to stop); one line per request follows on stderr", markup=False)
    out.file.flush()
    serve_forever(application, sock, settings.limits)
    err.print("enclave stopped; its state (every upload and result) is gone")


def _print_measurements(attestor: Attestor, pcr_out: Path, *, debug: bool) -> None:
    """PCR0-2 as the enclave attests them, and the development PCR file it wrote."""
    from oblv_mpc.attestation import SimulatedNsm

    if not isinstance(attestor, SimulatedNsm):
        out.print(styled("[bold]attestor[/]      the Nitro Secure Module (/dev/nsm); PCRs are the EIF's (nitro-cli)"))
        return
    measurements = attestor.measurements
    write_pcr_file(attestor.ca.policy(measurements), pcr_out, description="local simulated enclave")
    attested = attestor.pcrs()  # all zero in debug mode, as Nitro reports them
    for index in (0, 1, 2):
        out.print(
            styled("[bold]PCR{index}[/]          {value}", index=index, value=attested[index].hex()), soft_wrap=True
        )
    root = attestor.ca.root_sha256[:16]
    out.print(styled("[bold]PCR file[/]      {file} (development root {root}...)", file=pcr_out, root=root))
    warn("development enclave: simulated NSM, no hardware isolation; for trying mpc on one machine")
    if debug:
        warn(
            "DEBUG MODE: this enclave attests PCR0-2 as all zero (above); clients refuse it unless they allow debug "
            f"enclaves. {pcr_out} holds what this code measures to outside debug mode"
        )


def _print_routes(apps: list[str], routers: list[APIRouter]) -> None:
    """The routes of the ``--app`` routers, as parties reach them through `mpc connect --lport`."""
    if not routers:
        return
    out.print("your routes (--app), for parties through `mpc connect ... --lport PORT`:", markup=False)
    for spec, router in zip(apps, routers, strict=True):
        for route in router.routes:
            methods = ",".join(sorted(getattr(route, "methods", None) or ["*"]))
            path = getattr(route, "path", "?")
            out.print(plain(f"  {methods} {path}  ({spec})"), soft_wrap=True)


def _print_connect_lines(loaded: manifest.Manifest, url: str, manifest_path: Path, pcr_out: Path) -> None:
    """Each party's `mpc connect` line, naming the files every party holds its own copy of."""
    out.print(styled("[bold]session[/]       {session}", session=loaded.session))
    out.print(styled("[bold]manifest hash[/] {hash}", hash=loaded.hash))
    out.print(
        f"each party connects with its own copies of {manifest_path.name} and {pcr_out.name} (send them these two "
        "files) and its own private key, in the folder that holds them:",
        markup=False,
    )
    for party in loaded.parties:
        command = ["mpc", "connect", "--url", url, "--pcr-file", pcr_out.name, "--manifest", manifest_path.name,
                   "--key", f"{party}_private.der", "--party", party]  # fmt: skip
        out.print("  " + shlex.join(command), soft_wrap=True, markup=False)


@app.command("provision")
def provision(
    url: str = typer.Option(
        ..., "--url", envvar="MPC_URL", metavar="URL", help="The enclave's URL (through the parent's forwarder)."
    ),
    manifest_path: Path = typer.Option(..., "--manifest", help="The session manifest every party agreed to."),
) -> None:
    """Give an enclave started with --await-manifest its session manifest (once per launch)."""
    import httpx

    from oblv_mpc.provisioning import provision as send_manifest

    with httpx.Client(base_url=url, timeout=30) as http:
        provisioned = send_manifest(http, manifest_path)
    out.print(f"provisioned session {provisioned.session}, manifest hash {provisioned.manifest_sha256}")
    err.print("parties verify this hash in every attestation; a different manifest would be refused by them")


def register(root: typer.Typer) -> None:
    """Add ``mpc enclave ...`` to ``root``."""
    root.add_typer(app, name="enclave")
