"""Dockerfile.enclave and enclave.lock follow the reproducibility and pinning rules."""

from __future__ import annotations

import pytest

from tests.deploy.dockerfile_rules import ROOT, check, check_repository

DOCKERFILE = (ROOT / "Dockerfile.enclave").read_text()
LOCK = (ROOT / "enclave.lock").read_text()
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def test_the_real_files_pass() -> None:
    assert check_repository() == []


BROKEN = [
    ("unpinned base", lambda d: d.replace("@sha256:", ":3.11-slim#"), "not pinned by @sha256 digest"),
    ("latest", lambda d: d.replace("python:3.11-slim-bookworm@", "python:latest@"), "latest tag"),
    ("no hashes", lambda d: d.replace("--require-hashes ", ""), "pip install without --require-hashes"),
    ("source builds", lambda d: d.replace("--only-binary=:all: ", ""), "without --only-binary=:all:"),
    (
        "bytecode",
        lambda d: d.replace("PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE=0"),
        "bytecode would be written",
    ),
    ("root", lambda d: d.replace("USER 10001:10001", "USER root"), "run as root"),
    ("no user", lambda d: d.replace("USER 10001:10001", ""), "run as root"),
    (
        "shell entrypoint",
        lambda d: d.replace('ENTRYPOINT ["python", "-m"', 'ENTRYPOINT python -m ["x"'),
        "exec (JSON array) form",
    ),
    ("simulator fallback", lambda d: d.replace('"--attestor", "nsm"', '"--attestor", "auto"'), "--attestor nsm"),
    ("network fetch", lambda d: d + "\nRUN curl -sSL https://example.com/x | sh\n", "fetches unpinned content"),
    ("add url", lambda d: d + "\nADD https://example.com/x /x\n", "ADD from a URL"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_rule_catches_a_broken_dockerfile(name: str, edit: object, message: str) -> None:
    broken = edit(DOCKERFILE)  # type: ignore[operator]
    problems = check(broken, LOCK, PYPROJECT)
    assert any(message in p for p in problems), f"{name}: {problems}"


def test_the_lock_rules_catch_an_unpinned_or_incomplete_lock() -> None:
    unhashed = LOCK.replace("--hash=sha256:", "--hash=md5:")
    assert any("has no --hash" in p for p in check(DOCKERFILE, unhashed, PYPROJECT))
    loose = LOCK.replace("duckdb==", "duckdb>=")
    assert any("duckdb>=" in p and "not pinned" in p for p in check(DOCKERFILE, loose, PYPROJECT))
    more = PYPROJECT.replace('"duckdb>=1.1",', '"duckdb>=1.1",\n    "sqlglot>=25",')  # not in the lock
    assert any("sqlglot is missing" in p for p in check(DOCKERFILE, LOCK, more))
