"""Which attestor an enclave uses: the real NSM inside a Nitro Enclave, else the simulator.

``auto`` takes the NSM whenever ``/dev/nsm`` exists. It never falls back to the simulator
silently where a real enclave is expected: serving on vsock (which only a Nitro Enclave does)
without ``/dev/nsm`` is refused unless the simulator is asked for by name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path

from oblv_mpc.attestation import Attestor, DevelopmentCA, NitroNsm, SimulatedNsm, measure
from oblv_mpc.attestation.nsm import DEVICE
from oblv_mpc.errors import UsageError


class AttestorKind(enum.StrEnum):
    """Which attestor ``mpc enclave serve --attestor`` uses."""

    AUTO = "auto"
    NSM = "nsm"
    SIMULATED = "simulated"


def choose(
    kind: AttestorKind,
    *,
    vsock: bool,
    ca_dir: Path,
    debug: bool = False,
    device: Path = DEVICE,
    apps: Iterable[tuple[str, Path]] = (),
) -> Attestor:
    """The attestor for ``kind``, refusing combinations that would mislead the parties."""
    present = NitroNsm.available(device)
    if kind is AttestorKind.NSM or (kind is AttestorKind.AUTO and present):
        if debug:
            raise UsageError("--debug-mode simulates a debug enclave; with the real NSM use nitro-cli's --debug-mode")
        return NitroNsm(device)
    if kind is AttestorKind.AUTO and vsock:
        raise UsageError(
            f"serving on vsock means running in a Nitro Enclave, but {device} is absent",
            hint="inside an enclave, check the image; to try vsock with the simulator, pass --attestor simulated",
        )
    return SimulatedNsm(DevelopmentCA.load_or_create(ca_dir), measure(apps=apps), debug=debug)
