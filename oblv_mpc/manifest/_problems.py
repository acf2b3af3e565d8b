"""Collects every problem in a manifest, each with its field path, before raising once."""

from __future__ import annotations

from typing import Any


def show(value: Any) -> str:
    """A short, safe rendering of a found value for an error message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Problems:
    """Problems found so far, as ``path: expected X, found Y`` lines."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def expected(self, path: str, expected: str, found: Any) -> None:
        self.add(path, f"expected {expected}, found {show(found)}")

    def __bool__(self) -> bool:
        return bool(self.items)
