"""The pinning rules Dockerfile.enclave must follow, as a checker (hadolint-like, but for our rules).

Each rule returns a message when broken; tests run it on the real files and on broken copies.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check(dockerfile: str, lock: str, pyproject: str) -> list[str]:
    """Every broken rule, as a message; empty when the image is pinned as it must be."""
    instructions = _instructions(dockerfile)
    return [
        *_check_from(instructions),
        *_check_fetches(instructions),
        *_check_runtime(instructions),
        *_check_entrypoint(instructions),
        *_check_lock(lock, pyproject),
    ]


def _check_from(instructions: list[tuple[str, str]]) -> list[str]:
    """The base image: pinned by digest, never a moving tag."""
    problems = []
    froms = [args for word, args in instructions if word == "FROM"]
    if not froms:
        problems.append("no FROM")
    for image in froms:
        reference = image.split()[0]
        if not _DIGEST.search(reference):
            problems.append(f"FROM {reference}: base image not pinned by @sha256 digest")
        if ":latest" in reference:
            problems.append(f"FROM {reference}: the latest tag moves")
    return problems


def _check_fetches(instructions: list[tuple[str, str]]) -> list[str]:
    """Nothing fetched unpinned; dependencies from the lock file, by hash, as wheels."""
    problems = []
    runs = [args for word, args in instructions if word == "RUN"]
    for run in runs:
        if re.search(r"\b(curl|wget|git clone|apt-get install)\b", run):
            problems.append(f"RUN fetches unpinned content: {run[:60]}")
        if "pip install" in run:
            for flag in ("--require-hashes", "--only-binary=:all:", "--no-compile", "-r "):
                if flag not in run:
                    problems.append(f"pip install without {flag.strip()}")
    if not any("pip install" in run for run in runs):
        problems.append("dependencies are not installed from the lock file")
    for word, args in instructions:
        if word == "ADD" and re.search(r"https?://", args):
            problems.append("ADD from a URL fetches unpinned content")
    return problems


def _check_runtime(instructions: list[tuple[str, str]]) -> list[str]:
    """No bytecode written (timestamps), and not root."""
    problems = []
    env = " ".join(args for word, args in instructions if word == "ENV")
    if "PYTHONDONTWRITEBYTECODE=1" not in env:
        problems.append("bytecode would be written (.pyc files carry timestamps)")
    users = [args for word, args in instructions if word == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append("the app would run as root: set a non-root USER")
    return problems


def _check_entrypoint(instructions: list[tuple[str, str]]) -> list[str]:
    """An exec-form ENTRYPOINT on vsock, awaiting its manifest, with the real NSM only."""
    entrypoints = [args for word, args in instructions if word == "ENTRYPOINT"]
    if not entrypoints:
        return ["no ENTRYPOINT"]
    try:
        argv = json.loads(entrypoints[-1])
    except json.JSONDecodeError:
        return ["ENTRYPOINT must be in exec (JSON array) form"]
    problems = [
        f"ENTRYPOINT does not pass {needed}" for needed in ("--vsock-port", "--await-manifest") if needed not in argv
    ]
    if "--attestor" not in argv or argv[argv.index("--attestor") + 1] != "nsm":
        problems.append("ENTRYPOINT must pin --attestor nsm (never fall back to the simulator)")
    return problems


def _check_lock(lock: str, pyproject: str) -> list[str]:
    problems = []
    entries: dict[str, list[str]] = {}
    current: str | None = None
    for line in re.sub(r"\\\n", " ", lock).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, version = stripped.split()[0].partition("==")
        if not sep or not re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version):
            problems.append(f"enclave.lock: {stripped.split()[0]} is not pinned with ==")
            continue
        current = _normalize(name)
        entries[current] = re.findall(r"--hash=sha256:([0-9a-f]{64})", stripped)
    for name, hashes in entries.items():
        if not hashes:
            problems.append(f"enclave.lock: {name} has no --hash")
    project = tomllib.loads(pyproject)["project"]
    # The image runs synthetic releases too: the `synthetic` extra is part of the runtime.
    declared = [*project["dependencies"], *project.get("optional-dependencies", {}).get("synthetic", [])]
    for requirement in declared:
        name = _normalize(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        if name not in entries:
            problems.append(f"enclave.lock: runtime dependency {name} is missing; regenerate the lock")
    return problems


def check_repository() -> list[str]:
    return check(
        (ROOT / "Dockerfile.enclave").read_text(),
        (ROOT / "enclave.lock").read_text(),
        (ROOT / "pyproject.toml").read_text(),
    )
