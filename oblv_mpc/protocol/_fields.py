"""Reading a decoded CBOR map field by field: each mistake names the field and what was expected.

The enclave reads requests with :func:`refuse` (a sealed ``bad_request``); the client reads
answers with :func:`malformed` (a :class:`ProtocolError`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from oblv_mpc.errors import EnclaveRefused, MpcError, ProtocolError

T = TypeVar("T")
_MAX_COUNT = 2**63 - 1
_ABSENT: Any = object()


def refuse(message: str) -> MpcError:
    """A request the enclave will not read: ``bad_request``, sealed to its sender."""
    return EnclaveRefused("bad_request", message)


def malformed(message: str) -> MpcError:
    """An answer the client will not read."""
    return ProtocolError(f"malformed answer: {message}")


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_bytes(value: Any) -> bool:
    return isinstance(value, bytes)


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_COUNT


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_map(value: Any) -> bool:
    return isinstance(value, dict)


def _or_null(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


class Fields:
    """A map from the wire; ``what`` names it in messages, ``fail`` makes the error."""

    def __init__(self, value: Any, what: str, fail: Callable[[str], MpcError]) -> None:
        if not isinstance(value, dict):
            raise fail(f"{what} must be a map")
        self._map: dict[Any, Any] = value
        self.what = what
        self.fail = fail

    def _get(self, name: str, check: Callable[[Any], bool], expected: str, default: Any) -> Any:
        if name not in self._map:
            if default is not _ABSENT:
                return default
            raise self.fail(f"{self.what} needs {name!r} ({expected})")
        value = self._map[name]
        if not check(value):
            raise self.fail(f"{self.what}: {name!r} must be {expected}")
        return value

    def text(self, name: str, default: str | None = _ABSENT) -> str:
        """A text field (``default`` when absent, if given)."""
        return str(self._get(name, _is_text, "text", default))

    def optional_text(self, name: str) -> str | None:
        """Text or null; null when absent."""
        value = self._get(name, _or_null(_is_text), "text or null", None)
        return None if value is None else str(value)

    def raw(self, name: str, size: int | None = None) -> bytes:
        """A byte string (of exactly ``size`` bytes, if given)."""
        expected = f"{size} bytes" if size else "bytes"
        value = self._get(name, _is_bytes, expected, _ABSENT)
        if size is not None and len(value) != size:
            raise self.fail(f"{self.what}: {name!r} must be {expected}")
        return bytes(value)

    def flag(self, name: str) -> bool:
        """True or false."""
        return bool(self._get(name, _is_flag, "true or false", _ABSENT))

    def count(self, name: str) -> int:
        """A whole number, 0 or more."""
        return int(self._get(name, _is_count, "a whole number, 0 or more", _ABSENT))

    def optional_count(self, name: str) -> int | None:
        """A whole number or null; null when absent."""
        value = self._get(name, _or_null(_is_count), "a whole number or null", None)
        return None if value is None else int(value)

    def number(self, name: str) -> float:
        """An integer or a float, as it came (an integer stays one)."""
        value: float = self._get(name, _is_number, "a number", _ABSENT)
        return value

    def optional_number(self, name: str) -> float | None:
        """A number or null; null when absent."""
        value: float | None = self._get(name, _or_null(_is_number), "a number or null", None)
        return value

    def listed(self, name: str, default: list[Any] | None = _ABSENT) -> list[Any]:
        """A list (``default`` when absent, if given)."""
        value: list[Any] = self._get(name, _is_list, "a list", default)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        """A list of text."""
        values = self.listed(name)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(f"{self.what}: {name!r} must be a list of text")
        return tuple(values)

    def named(self, name: str, parse: Callable[[Any], T]) -> dict[str, T]:
        """A map from text to values that ``parse`` reads."""
        value: dict[Any, Any] = self._get(name, _is_map, "a map", _ABSENT)
        if not all(isinstance(key, str) for key in value):
            raise self.fail(f"{self.what}: the keys of {name!r} must be text")
        return {key: parse(item) for key, item in value.items()}

    def value(self, name: str) -> Any:
        """Any value (another reader checks it)."""
        if name not in self._map:
            raise self.fail(f"{self.what} needs {name!r}")
        return self._map[name]
