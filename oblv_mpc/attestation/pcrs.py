"""PCR files: the measurements a party accepts, the root it trusts, and nothing left implicit.

```yaml
version: 1
description: salaries enclave, image built from commit abc123
measurements:                 # at least one set; a document must match one set entirely
  - name: release-1.2
    pcr0: 9c1d...             # 96 hex digits (SHA-384)
    pcr1: ...
    pcr2: ...
    pcr8: ...                 # optional: any other PCR index to require
root: aws                     # the AWS Nitro Enclaves root G1 (the default)
# root: {sha256: 3f2a..., development: true}   # a simulator's root, pinned by fingerprint
allow_debug: false            # debug enclaves (PCR0-2 all zero) are refused unless true
```

A missing file, a file with no measurements, or one with an unknown field is an error: never
"no check". Each key is said once and in its one spelling: a duplicate key (YAML would keep the
last), or a PCR key written any other way than ``pcrN`` (``PCR0``, ``pcr00``, ``"pcr0\n"``), is
an error naming the key and its line. The YAML is parsed with caps (``oblv_mpc.safe_yaml``: no
aliases, bounded depth and size). :func:`from_nitro_cli` turns ``nitro-cli build-enclave`` /
``describe-eif`` JSON into a PCR file, with the same rules for its ``PCRn`` keys.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from oblv_mpc import safe_yaml
from oblv_mpc.attestation.policy import AWS_ROOT, PCR_BYTES, AttestationPolicy, PcrSet, TrustedRoot
from oblv_mpc.errors import PcrFileError, UsageError

PCR_FILE_VERSION = 1
MAX_PCR_FILE_BYTES = 256 * 1024
# Caps on a PCR file's YAML (safe_yaml.py); a real one is a few sets of a few PCRs.
YAML_LIMITS = safe_yaml.YamlLimits(
    max_bytes=MAX_PCR_FILE_BYTES,  # UTF-8 bytes
    max_depth=8,  # nested nodes, root to deepest value (a real file: 4)
    max_nodes=4_096,  # scalars, sequences and mappings, keys included
)
# The one spelling of a PCR index, 0 to 31: fullmatch, no leading zero.
_PCR_INDEX = re.compile(r"[0-9]|[12][0-9]|3[01]")
# Anything a reader could take for a PCR key: other case, spaces, leading zeros, any number.
_PCR_LOOKALIKE = re.compile(r"\s*pcr\s*[-+]?[0-9]+\s*", re.IGNORECASE)
_TOP = {"version", "description", "measurements", "root", "allow_debug"}


def parse_pcr_hex(value: Any, where: str) -> bytes:
    """A PCR value given as 96 hex digits."""
    if isinstance(value, int | float):
        raise PcrFileError(
            f"{where}: expected {PCR_BYTES * 2} hex digits, found a number",
            hint="YAML reads hex made only of digits as a number: put the value in quotes",
        )
    if not isinstance(value, str):
        raise PcrFileError(f"{where}: expected {PCR_BYTES * 2} hex digits, found {type(value).__name__}")
    text = value.strip().lower()
    if len(text) != PCR_BYTES * 2 or any(c not in "0123456789abcdef" for c in text):
        raise PcrFileError(f"{where}: expected {PCR_BYTES * 2} hex digits (SHA-384), found {len(text)} characters")
    return bytes.fromhex(text)


def _at(data: Any, key: Any) -> str:
    """`` (line N)`` where the parser saw ``key`` in ``data``, if it recorded it."""
    lines = getattr(data, "key_lines", None)
    line = lines.get(key) if isinstance(lines, dict) else None
    return f" (line {line})" if line else ""


def pcr_index(key: Any, *, prefix: str, where: str, line: str = "") -> int | None:
    """The index of a PCR key spelled exactly ``{prefix}N`` (N in 0..31), None if it is no such key.

    A key that looks like a PCR key in any other spelling is refused: two spellings of one PCR
    would let a file say it twice, and a reader could miss which one counts.
    """
    if isinstance(key, str) and key.startswith(prefix) and _PCR_INDEX.fullmatch(key[len(prefix) :]):
        return int(key[len(prefix) :])
    if isinstance(key, str) and _PCR_LOOKALIKE.fullmatch(key):
        digits = re.sub(r"[^0-9-]", "", key).lstrip("0") or "0"
        number = int(digits) if len(digits) <= 3 else -1
        if 0 <= number <= 31:
            raise PcrFileError(
                f"{where}: PCR key {key!r}{line} must be written {prefix}{number} exactly "
                "(no other case, spaces or leading zeros)"
            )
    return None  # not a PCR key (or a PCR beyond 31): the caller says it is unknown


def policy_from_data(data: Any, *, source: str, allow_debug_override: bool = False) -> AttestationPolicy:
    """Validate parsed PCR-file data into a policy. Every error names ``source``."""
    try:
        return _policy(data, source=source, allow_debug_override=allow_debug_override)
    except PcrFileError as exc:
        if exc.message.startswith(f"{source}: "):
            raise
        raise PcrFileError(f"{source}: {exc.message}", hint=exc.hint) from None


def _policy(data: Any, *, source: str, allow_debug_override: bool) -> AttestationPolicy:
    if not isinstance(data, dict):
        raise PcrFileError(f"{source}: expected a mapping with measurements", hint="see docs/attestation.md")
    unknown = sorted(set(map(str, data)) - _TOP)
    if unknown:
        raise PcrFileError(f"{source}: unknown field(s) {', '.join(unknown)} (expected: {', '.join(sorted(_TOP))})")
    if data.get("version") != PCR_FILE_VERSION:
        raise PcrFileError(f"{source}: version: expected {PCR_FILE_VERSION}, found {data.get('version')!r}")
    raw_sets = data.get("measurements")
    if not isinstance(raw_sets, list) or not raw_sets:
        raise PcrFileError(
            f"{source}: measurements: expected a non-empty list of PCR sets, found {raw_sets!r:.40}",
            hint="a PCR file with no measurements would check nothing, so it is refused",
        )
    accepted = []
    for i, raw in enumerate(raw_sets):
        where = f"{source}: measurements[{i}]"
        if not isinstance(raw, dict):
            raise PcrFileError(f"{where}: expected a mapping of pcr0, pcr1, pcr2 ...")
        values: dict[int, bytes] = {}
        name = raw.get("name", "")
        if not isinstance(name, str):
            raise PcrFileError(f"{where}.name: expected text")
        for key, value in raw.items():
            if key == "name":
                continue
            index = pcr_index(key, prefix="pcr", where=where, line=_at(raw, key))
            if index is None:
                raise PcrFileError(
                    f"{where}: unknown field {key!r}{_at(raw, key)} (expected name and pcrN, N in 0..31)"
                )
            values[index] = parse_pcr_hex(value, f"{where}.{key}")
        accepted.append(PcrSet(values, name=name or f"measurements[{i}]"))
    root = _root(data.get("root", "aws"), source)
    allow_debug = data.get("allow_debug", False)
    if not isinstance(allow_debug, bool):
        raise PcrFileError(f"{source}: allow_debug: expected true or false, found {allow_debug!r}")
    return AttestationPolicy(
        accepted=tuple(accepted), roots=(root,), allow_debug=allow_debug or allow_debug_override, source=source
    )


def _root(raw: Any, source: str) -> TrustedRoot:
    if raw == "aws":
        return AWS_ROOT
    if isinstance(raw, dict) and set(raw) <= {"sha256", "development", "name"}:
        if raw.get("development") is not True:
            raise PcrFileError(
                f"{source}: root: a root other than AWS's is only accepted as a development root",
                hint="add `development: true` if this is a simulator's root, or use `root: aws`",
            )
        fingerprint = raw.get("sha256")
        if not isinstance(fingerprint, str):
            raise PcrFileError(f"{source}: root.sha256: expected the SHA-256 of the root's DER, in hex")
        return TrustedRoot(fingerprint.lower(), str(raw.get("name", "development root")), development=True)
    raise PcrFileError(f"{source}: root: expected 'aws' or {{sha256: HEX, development: true}}, found {raw!r:.60}")


def load_pcr_file(path: Path, *, allow_debug_override: bool = False) -> AttestationPolicy:
    """Read and validate the PCR file at ``path``."""
    try:
        if path.stat().st_size > MAX_PCR_FILE_BYTES:
            raise PcrFileError(f"{path}: larger than {MAX_PCR_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PcrFileError(
            f"{path}: no such file",
            hint="get the PCR file from whoever built the enclave image, or rebuild it and run `mpc pcrs import`",
        ) from None
    except UnicodeDecodeError:
        raise PcrFileError(
            f"{path}: not a PCR file (it is not text; a PCR file is YAML)",
            hint="pass the PCR file (e.g. enclave-pcrs.yaml, or one from `mpc pcrs import`), not a document or a key",
        ) from None
    except OSError as exc:
        raise PcrFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = safe_yaml.load(text, YAML_LIMITS, lines=True)
    except safe_yaml.UnsafeYaml as exc:
        raise PcrFileError(f"{path}: {exc}") from None
    return policy_from_data(data, source=str(path), allow_debug_override=allow_debug_override)


def policy_from_flags(pcr0: str, pcr1: str, pcr2: str, *, allow_debug: bool = False) -> AttestationPolicy:
    """The policy that ``--pcr0/--pcr1/--pcr2`` (as ``oblv connect`` takes them) describe."""
    values = {i: parse_pcr_hex(v, f"--pcr{i}") for i, v in enumerate((pcr0, pcr1, pcr2))}
    return AttestationPolicy(
        accepted=(PcrSet(values, name="command line"),), allow_debug=allow_debug, source="--pcr0/1/2"
    )


def choose_policy(
    pcr_file: Path | None, pcrs: tuple[str | None, str | None, str | None], *, allow_debug: bool = False
) -> AttestationPolicy:
    """The policy from a PCR file or from PCR0-2 given as flags: exactly one, never none."""
    if pcr_file is not None and any(pcrs):
        raise UsageError("give --pcr-file or --pcr0/--pcr1/--pcr2, not both")
    if pcr_file is not None:
        return load_pcr_file(pcr_file, allow_debug_override=allow_debug)
    pcr0, pcr1, pcr2 = pcrs
    if pcr0 and pcr1 and pcr2:
        return policy_from_flags(pcr0, pcr1, pcr2, allow_debug=allow_debug)
    raise UsageError(
        "no PCR policy: an enclave is only trusted against measurements you expect",
        hint="pass --pcr-file F (from the image's builder, or `mpc pcrs import`), or all of --pcr0 --pcr1 --pcr2",
    )


def to_data(policy: AttestationPolicy, *, description: str = "") -> dict[str, Any]:
    """The PCR-file form of ``policy``."""
    (root,) = policy.roots
    data: dict[str, Any] = {"version": PCR_FILE_VERSION}
    if description:
        data["description"] = description
    data["measurements"] = [
        {"name": s.name, **{f"pcr{i}": v.hex() for i, v in sorted(s.values.items())}} for s in policy.accepted
    ]
    data["root"] = "aws" if root == AWS_ROOT else {"name": root.name, "sha256": root.sha256, "development": True}
    data["allow_debug"] = policy.allow_debug
    return data


def write_pcr_file(policy: AttestationPolicy, path: Path, *, description: str = "") -> None:
    """Write ``policy`` as a PCR file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = safe_yaml.dump(to_data(policy, description=description), sort_keys=False)
    path.write_text(text, encoding="utf-8")


def _unique_keys(pairs: list[tuple[str, Any]], *, source: str) -> dict[str, Any]:
    """A JSON object, refusing a key said twice (``json`` would keep the last)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise PcrFileError(f"{source}: duplicate key {key!r}: say each thing once")
        data[key] = value
    return data


def from_nitro_cli(text: str, *, source: str = "nitro-cli output", name: str = "") -> AttestationPolicy:
    """Read ``nitro-cli build-enclave`` / ``describe-eif`` / ``describe-enclaves`` JSON."""
    if len(text) > MAX_PCR_FILE_BYTES:
        raise PcrFileError(f"{source}: larger than {MAX_PCR_FILE_BYTES} characters")
    try:
        data = json.loads(text, object_pairs_hook=functools.partial(_unique_keys, source=source))
    except json.JSONDecodeError as exc:
        raise PcrFileError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise PcrFileError(f"{source}: nested too deeply to be nitro-cli's output") from None
    if isinstance(data, list):  # describe-enclaves lists running enclaves
        if len(data) != 1:
            raise PcrFileError(f"{source}: expected one enclave, found {len(data)}", hint="save one enclave's output")
        data = data[0]
    measurements = data.get("Measurements") if isinstance(data, dict) else None
    if not isinstance(measurements, dict):
        raise PcrFileError(f'{source}: no "Measurements" object', hint="pass the JSON that nitro-cli printed")
    algorithm = str(measurements.get("HashAlgorithm", ""))
    if "sha384" not in algorithm.lower():
        raise PcrFileError(f"{source}: HashAlgorithm must be SHA-384, found {algorithm!r}")
    values = {}
    for key, value in measurements.items():
        index = pcr_index(key, prefix="PCR", where=f"{source}: Measurements")
        if index is not None:
            values[index] = parse_pcr_hex(value, f"{source}: {key}")
    eif_name = data.get("EnclaveName") if isinstance(data, dict) else None
    label = name or (str(eif_name) if eif_name else "nitro-cli")
    try:
        return AttestationPolicy(accepted=(PcrSet(values, name=label),), source=source)
    except PcrFileError as exc:
        raise PcrFileError(f"{source}: {exc.message}", hint=exc.hint) from None
