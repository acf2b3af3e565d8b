"""YAML from outside (manifests, PCR files), parsed once, with limits, before anything is built.

PyYAML's ``safe_load`` builds Python objects only of plain types, but it expands aliases (a
967-byte "billion laughs" document makes 10^9 references, taking seconds and gigabytes), keeps
the last of duplicate keys, and recurses without limit. :func:`load` refuses, while composing
the node graph and so before constructing any object:

- an anchor (``&a``) or alias (``*a``): our documents never need them;
- a merge key (``<<``), which lets one mapping say a key twice;
- an explicit tag other than the plain types' (``!!str``, ``!!int`` ...): no ``!!binary``,
  ``!!set``, ``!!timestamp``, ``!!python/...`` or custom tags;
- a duplicate key in a mapping (PyYAML keeps the last one silently);
- more than ``max_depth`` nested nodes, or more than ``max_nodes`` nodes in all;
- more than ``max_bytes`` bytes of UTF-8.

Work is then bounded by construction: composing stops at the first node past a cap, and the
constructor only visits the at most ``max_nodes`` nodes composed. Refusals are
:class:`UnsafeYaml`, with the line and column; each caller turns them into its own error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node

from oblv_mpc.terminal_text import describe

_MERGE_TAG = "tag:yaml.org,2002:merge"
_WRITE_OUT = "write the value out (PyYAML's dump writes an anchor for a list used twice: dump a copy)"
_PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")}


@dataclass(frozen=True)
class YamlLimits:
    """Caps on one YAML document from outside."""

    max_bytes: int  # UTF-8 bytes of the whole text
    max_depth: int  # nodes from the document's root to its deepest scalar, both counted
    max_nodes: int  # scalars, sequences and mappings, keys included


class UnsafeYaml(Exception):
    """A document refused: ``problem`` says what, ``line``/``column`` (from 1) where, if known.

    Internal to parsing: each caller re-raises it as its own :class:`~oblv_mpc.errors.MpcError`.
    """

    def __init__(self, problem: str, mark: Any = None) -> None:  # a yaml Mark (pure or libyaml)
        self.problem = problem
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None
        where = f" (line {self.line}, column {self.column})" if mark is not None else ""
        super().__init__(problem + where)


class LineDict(dict[Any, Any]):
    """A mapping that remembers the line (from 1) of each of its keys: ``key_lines``."""

    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader with the caps of :class:`YamlLimits`, checked while composing."""

    def __init__(self, text: str, limits: YamlLimits, *, lines: bool) -> None:
        super().__init__(text)
        self.limits = limits
        self.lines = lines
        self.depth = 0
        self.nodes = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner keeps a possible key per open '[' or '{' and checks them all at every token:
        # quadratic in flow depth, before the composer sees anything. So the cap applies here too.
        if self.flow_level >= self.limits.max_depth:
            raise UnsafeYaml(f"nested more than {self.limits.max_depth} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's parser is untyped
        if isinstance(event, AliasEvent):
            raise UnsafeYaml(f"an alias (*{event.anchor}) is not allowed: {_WRITE_OUT}", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise UnsafeYaml(f"an anchor (&{event.anchor}) is not allowed: {_WRITE_OUT}", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _PLAIN_TAGS:
            raise UnsafeYaml(f"the tag {tag!r} is not allowed: plain values only", event.start_mark)
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise UnsafeYaml(f"more than {self.limits.max_nodes} values in one document", event.start_mark)
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise UnsafeYaml(f"nested more than {self.limits.max_depth} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _Loader, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            raise UnsafeYaml("a merge key (<<) is not allowed: write each key once", key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise UnsafeYaml("a mapping key must be a plain value", key_node.start_mark) from None
        if duplicate:
            raise UnsafeYaml(f"duplicate key {key!r}: say each thing once", key_node.start_mark)
        seen.add(key)
        lines[key] = key_node.start_mark.line + 1
    built: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    if not loader.lines:
        return built
    located = LineDict(built)
    located.key_lines = lines
    return located


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes a value used twice twice, instead of as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(data: Any, **options: Any) -> str:
    """YAML text for ``data`` that :func:`load` accepts: plain types, no anchors or aliases."""
    text: str = yaml.dump(data, Dumper=_Dumper, **options)
    return text


def load(text: str, limits: YamlLimits, *, lines: bool = False) -> Any:
    """Parse one YAML document within ``limits``; raise :class:`UnsafeYaml` on anything else.

    With ``lines``, mappings are :class:`LineDict`, so a caller can say where a key is.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise UnsafeYaml(f"{size} bytes: larger than the {limits.max_bytes} bytes allowed")
    loader = None
    try:
        loader = _Loader(text, limits, lines=lines)  # the reader refuses control characters at once
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        what = describe(chr(exc.character)) if isinstance(exc.character, int) else repr(exc.character)
        raise UnsafeYaml(f"not valid YAML: {what} at character {exc.position + 1} may not appear in YAML") from None
    except yaml.MarkedYAMLError as exc:
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "not YAML"
        raise UnsafeYaml(f"not valid YAML: {problem}", exc.problem_mark or exc.context_mark) from None
    except yaml.YAMLError as exc:
        raise UnsafeYaml(f"not valid YAML: {type(exc).__name__}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # PyYAML building e.g. the date 2024-02-30
        raise UnsafeYaml(f"a value YAML cannot build: {type(exc).__name__}: {str(exc)[:80]}") from None
    finally:
        if loader is not None:
            loader.dispose()
