"""Session manifests: the agreement every party and the enclave hold.

A manifest is YAML (schema version 1, ``docs/manifest.md``). :func:`load` parses and validates
it into a :class:`Manifest`; :attr:`Manifest.hash` is the SHA-256 of its deterministic CBOR
form, the value bound into every attestation and message of the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oblv_mpc import safe_yaml
from oblv_mpc.errors import ManifestError
from oblv_mpc.manifest._fields import party_name_problem
from oblv_mpc.manifest._parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, MAX_MANIFEST_BYTES, from_data, load_yaml
from oblv_mpc.manifest.model import (
    SCHEMA_VERSION,
    Column,
    ColumnType,
    Computation,
    InputTable,
    Manifest,
    Party,
    Role,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ROWS",
    "MAX_MANIFEST_BYTES",
    "SCHEMA_VERSION",
    "Column",
    "ColumnType",
    "Computation",
    "InputTable",
    "Manifest",
    "Party",
    "Role",
    "dump_document",
    "from_data",
    "load",
    "load_document",
    "parse",
    "party_name_problem",
]


def parse(text: str, *, source: str = "<manifest>", complete: bool = True) -> Manifest:
    """Validate manifest YAML text."""
    return from_data(load_yaml(text, source=source), source=source, complete=complete)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(["no such file"], source=str(path)) from None
    except UnicodeDecodeError:
        raise ManifestError(["not UTF-8 text"], source=str(path)) from None
    except OSError as exc:
        raise ManifestError([f"cannot read: {exc.strerror}"], source=str(path)) from None


def load(path: Path, *, complete: bool = True) -> Manifest:
    """Read and validate the manifest at ``path``."""
    return parse(_read(path), source=str(path), complete=complete)


def load_document(path: Path) -> dict[str, Any]:
    """The raw YAML mapping at ``path``, for editing commands."""
    data = load_yaml(_read(path), source=str(path))
    if not isinstance(data, dict):
        raise ManifestError(["expected a mapping at the top level"], source=str(path))
    return data


def dump_document(document: dict[str, Any], path: Path) -> None:
    """Validate ``document`` as a draft, then write it to ``path`` atomically."""
    from_data(document, source=str(path), complete=False)
    text = safe_yaml.dump(document, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
