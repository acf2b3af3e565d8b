"""Simulated PCRs that are real measurements of what the local enclave runs.

On Nitro, PCR0 measures the enclave image, PCR1 the kernel and bootstrap, PCR2 the application.
The simulator measures, with the same SHA-384 extend operation a PCR uses
(``pcr = SHA-384(pcr || SHA-384(item))``, starting from 48 zero bytes):

- PCR0: every ``*.py`` and ``*.pem`` file of the ``oblv_mpc`` package, in the order of their
  POSIX paths relative to the package folder; each item is ``path || 0x00 || content``; then
  the same for the code of the user's own routes served with ``--app`` (each module's file, or
  its package's files), as ``app/<module>/<path>``. Editing any of the app's code changes PCR0.
- PCR1: the runtime: ``python:<implementation>-<version>`` and ``openssl:<version>`` (the
  OpenSSL that ``cryptography`` uses).
- PCR2: the application's dependencies: ``<name>==<version>`` for each distribution in
  :data:`MEASURED_DISTRIBUTIONS`, in that order (``<name>==absent`` if not installed).
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import oblv_mpc

PCR_ZERO = bytes(48)
MEASURED_DISTRIBUTIONS = (
    "cbor2",
    "cryptography",
    "duckdb",
    "fastapi",
    "httpx",
    "pydantic",
    "pyyaml",
    "starlette",
    "uvicorn",
)
_MEASURED_SUFFIXES = (".py", ".pem")


@dataclass(frozen=True)
class Measurements:
    """PCR0-2 of the local enclave, with what went into each."""

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes
    files: int

    def as_dict(self) -> dict[int, bytes]:
        """PCR index to value, as a document's ``pcrs`` map has them."""
        return {0: self.pcr0, 1: self.pcr1, 2: self.pcr2}


def extend(items: Iterable[bytes]) -> bytes:
    """The PCR extend operation over ``items``, from an all-zero register."""
    pcr = PCR_ZERO
    for item in items:
        pcr = hashlib.sha384(pcr + hashlib.sha384(item).digest()).digest()
    return pcr


def code_files(package_dir: Path) -> list[Path]:
    """The files PCR0 measures, in measurement order."""
    found = [
        p
        for p in package_dir.rglob("*")
        if p.is_file() and p.suffix in _MEASURED_SUFFIXES and "__pycache__" not in p.parts
    ]
    return sorted(found, key=lambda p: p.relative_to(package_dir).as_posix())


def measure_runtime() -> bytes:
    """PCR1 over the Python runtime and OpenSSL version."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return extend(
        [
            f"python:{platform.python_implementation()}-{platform.python_version()}".encode(),
            f"openssl:{backend.openssl_version_text()}".encode(),
        ]
    )


def measure_dependencies() -> bytes:
    """PCR2 over the versions of the app's dependencies."""
    items = []
    for name in MEASURED_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        items.append(f"{name}=={version}".encode())
    return extend(items)


def _items(directory: Path, prefix: str = "") -> Iterable[bytes]:
    for p in code_files(directory):
        yield (prefix + p.relative_to(directory).as_posix()).encode() + b"\x00" + p.read_bytes()


def measure(package_dir: Path | None = None, *, apps: Iterable[tuple[str, Path]] = ()) -> Measurements:
    """PCR0-2 of the enclave app as installed (or of the package copy at ``package_dir``).

    ``apps``: (module name, file or package folder) of the user's routes, measured into PCR0 too.
    """
    directory = package_dir or Path(oblv_mpc.__file__).parent
    items = list(_items(directory))
    for name, location in apps:
        if location.is_dir():
            items += _items(location, f"app/{name}/")
        else:
            items.append(f"app/{name}/{location.name}".encode() + b"\x00" + location.read_bytes())
    return Measurements(extend(items), measure_runtime(), measure_dependencies(), len(items))
