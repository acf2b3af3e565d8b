"""Manifest YAML written to exhaust the parser is refused fast, in bounded memory, with a clear message."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblv_mpc import manifest
from oblv_mpc.errors import ManifestError
from oblv_mpc.manifest._parse import YAML_LIMITS


def billion_laughs() -> str:
    """A 'billion laughs' manifest of about 1 KB: 9 levels of 10 aliases, 10^9 strings expanded.

    The aliases land in a party's roles, where the old parser's validation formatted each
    unknown role (Python's enum error message repr()s the value): seconds and gigabytes.
    """
    lines = ["version: 1", "session: laughs", "laugh0: &laugh0 [" + ",".join(['"lol"'] * 10) + "]"]
    for level in range(1, 9):
        lines.append(f"laugh{level}: &laugh{level} [" + ",".join([f"*laugh{level - 1}"] * 10) + "]")
    lines += ["parties:", "  alice:", "    public_key: MCowBQYDK2VwAyEA", "    roles: *laugh8"]
    return "\n".join(lines) + "\n"


def _refused(text: str) -> tuple[ManifestError, float, int]:
    """Parse ``text``; return the refusal, the seconds it took and the peak bytes it allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ManifestError) as info:
            manifest.parse(text, source="hostile.yaml")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return info.value, seconds, peak


def test_a_billion_laughs_alias_bomb_is_refused_at_its_first_anchor() -> None:
    bomb = billion_laughs()
    assert 900 <= len(bomb.encode()) <= 1024  # 959 bytes: the old parser took 92 s and 1.4 GiB on it
    error, seconds, peak = _refused(bomb)
    assert seconds < 5  # before the caps: 92 s and 1.4 GiB; now about 1 ms
    assert peak < 1024 * 1024  # nothing was expanded: well under a MiB
    assert error.problems[0].startswith("an anchor (&laugh0) is not allowed: write the value out")
    assert error.problems[0].endswith("(line 3, column 9)")
    assert "hostile.yaml" in error.message


def test_an_alias_alone_is_refused() -> None:
    error, _, _ = _refused("version: 1\nsession: *s\n")
    assert "an alias (*s) is not allowed" in error.problems[0]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flow sequences", "[" * 200_000),
        ("flow mappings", "{a: " * 100_000),
        ("block sequences", "- " * 200_000 + "x"),
        ("block mappings", "".join(" " * i + "a:\n" for i in range(1000))),
    ],
)
def test_deep_nesting_is_refused_before_it_recurses(name: str, text: str) -> None:
    error, seconds, peak = _refused(text)
    assert f"nested more than {YAML_LIMITS.max_depth} levels deep" in error.problems[0], name
    assert seconds < 5, name  # the worst document under the caps: ~0.5 s
    assert peak < 8 * 1024 * 1024, name


def test_too_many_values_are_refused_while_composing() -> None:
    text = "[" + ",".join(["0"] * 50_000) + "]"  # 100 KB: under the byte cap, over the node cap
    error, _, peak = _refused(text)
    assert f"more than {YAML_LIMITS.max_nodes} values" in error.problems[0]
    assert peak < 64 * 1024 * 1024  # at most the cap's nodes were ever built


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nversion: 1\n", "duplicate key 'version': say each thing once (line 2, column 1)"),
        ("<<: {session: a}\nsession: b\n", "a merge key (<<) is not allowed"),
        ("session: !!binary aGk=\n", "the tag 'tag:yaml.org,2002:binary' is not allowed"),
        ("session: !!python/name:os.system x\n", "is not allowed: plain values only"),
        ("session: !custom x\n", "the tag '!custom' is not allowed"),
        ("session: 2024-02-30\n", "a value YAML cannot build"),
        ("session: !!int nope\n", "a value YAML cannot build"),
        ("? [a, b]\n: 1\n", "a mapping key must be a plain value"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: expected a single document"),
        ("session: \x1b[2K\n", "U+001B (ESC) at character 10 may not appear in YAML"),
    ],
)
def test_yaml_that_a_manifest_never_needs_is_refused_by_name(text: str, message: str) -> None:
    error, _, _ = _refused(text)
    assert message in error.problems[0]


def test_the_worst_document_under_the_byte_cap_is_refused_in_bounded_time() -> None:
    # The most work per byte we know of: many small keys up to the node cap, padded to the byte cap.
    keys = "".join(f"k{i}: 1\n" for i in range(YAML_LIMITS.max_nodes))
    text = keys + "#" * (YAML_LIMITS.max_bytes - len(keys) - 1)
    started = time.perf_counter()
    with pytest.raises(ManifestError, match="more than"):
        manifest.parse(text)
    assert time.perf_counter() - started < 5  # ~0.6 s alone on the development machine; CI is shared


def test_a_valid_manifest_still_parses_as_before(salary_doc: Any) -> None:
    text = yaml.safe_dump(salary_doc())
    assert manifest.parse(text).hash == manifest.from_data(yaml.safe_load(text)).hash


def test_limits_are_named_in_one_place() -> None:
    assert YAML_LIMITS.max_bytes == manifest.MAX_MANIFEST_BYTES


def test_session_check_refuses_the_alias_bomb_fast(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    started = time.perf_counter()
    done = cli("session", "check", str(path))
    assert time.perf_counter() - started < 1
    assert done.exit_code == 3
    assert "an anchor (&laugh0) is not allowed" in done.output
    assert "Traceback" not in done.output


def test_what_we_write_we_read_even_with_a_list_used_twice(salary_doc: Any, tmp_path: Path) -> None:
    doc = salary_doc()
    shared = doc["computations"]["average_salary"]["params"]["inputs"]
    doc["computations"]["common_ids"]["params"]["inputs"] = shared  # yaml.safe_dump writes &id001 / *id001
    with pytest.raises(ManifestError, match="PyYAML's dump writes an anchor"):
        manifest.parse(yaml.safe_dump(doc))
    path = tmp_path / "s.yaml"
    manifest.dump_document(doc, path)
    assert "&" not in path.read_text() and manifest.load(path).hash == manifest.from_data(doc).hash
