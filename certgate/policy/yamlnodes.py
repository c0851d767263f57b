"""Walking a composed YAML node tree with the file position and document path at hand.

We compose with ``yaml.SafeLoader`` and never construct Python objects: every scalar stays
the text the author wrote, every mapping is checked for duplicate and unknown keys, and every
error carries ``file:line:column`` and the path (``rules[2].require.clearance``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml

from certgate.policy.errors import PolicyError
from certgate.policy.model import SourceLocation

T = TypeVar("T")

_NULL_TAG = "tag:yaml.org,2002:null"


#: libyaml's parser when PyYAML was built with it: six times faster on a 1,000-rule policy
#: (0.16 s instead of 1 s), same node tree. Errors are reported by the pure-Python parser,
#: whose messages the tests and people know.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def compose_document(text: str, source_name: str) -> yaml.Node | None:
    """The node tree of a single YAML document; syntax errors become ``PolicyError``."""
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass  # parsed again below, for the pure-Python parser's message
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "syntax error"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise PolicyError(source_name, line, column, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(source_name, 1, 1, "", f"invalid YAML: {exc}") from None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "nothing (null)"
    return f"{node.value!r}"


@dataclass(frozen=True)
class Cursor:
    """A node together with where it is: the file name and its path in the document."""

    node: yaml.Node
    path: str
    source_name: str

    @property
    def location(self) -> SourceLocation:
        mark = self.node.start_mark
        return SourceLocation(self.source_name, mark.line + 1, mark.column + 1)

    def error(self, problem: str) -> PolicyError:
        loc = self.location
        return PolicyError(self.source_name, loc.line, loc.column, self.path, problem)

    def _child(self, node: yaml.Node, suffix: str) -> Cursor:
        path = (
            f"{self.path}.{suffix}"
            if self.path and not suffix.startswith("[")
            else (f"{self.path}{suffix}")
        )
        return Cursor(node, path, self.source_name)

    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def is_sequence(self) -> bool:
        return isinstance(self.node, yaml.SequenceNode)

    def mapping(
        self, allowed: Sequence[str] | None, required: Sequence[str] = ()
    ) -> dict[str, Cursor]:
        """The entries of a mapping; duplicate, unknown and missing keys are errors.

        ``allowed`` None accepts any key (for free-form maps such as VM labels).
        """
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {_kind(self.node)}")
        entries: dict[str, Cursor] = {}
        first_seen: dict[str, SourceLocation] = {}
        for key_node, value_node in self.node.value:
            key_cursor = self._child(key_node, "<key>")
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL_TAG:
                raise key_cursor.error(f"a key must be a plain name, got {_kind(key_node)}")
            key = str(key_node.value)
            at_key = self._child(key_node, key)
            if key in first_seen:
                raise at_key.error(
                    f"duplicate key {key!r} (first given at line {first_seen[key].line})"
                )
            if key == "<<":
                raise at_key.error("YAML merge keys ('<<') are not supported; write keys out")
            if allowed is not None and key not in allowed:
                raise at_key.error(_unknown_key_problem(key, allowed))
            first_seen[key] = at_key.location
            entries[key] = self._child(value_node, key)
        missing = [k for k in required if k not in entries]
        if missing:
            raise self.error(f"missing required key {missing[0]!r}")
        return entries

    def sequence(self, *, non_empty: bool = True) -> list[Cursor]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {_kind(self.node)}")
        if non_empty and not self.node.value:
            raise self.error("must not be empty (leave the key out instead)")
        return [self._child(item, f"[{i}]") for i, item in enumerate(self.node.value)]

    def string(self) -> str:
        """The text of a scalar as written: ``yes`` stays ``"yes"``, ``1`` stays ``"1"``."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag == _NULL_TAG:
            raise self.error(f"expected a string, got {_kind(self.node)}")
        value = str(self.node.value)
        if not value.strip():
            raise self.error("must not be empty")
        return value

    def strings(self) -> list[str]:
        """A non-empty list of strings."""
        return [item.string() for item in self.sequence()]

    def parsed(self, parse: Callable[[str], T]) -> T:
        """A scalar passed through ``parse``; its ``ValueError`` becomes a located error."""
        text = self.string()
        try:
            return parse(text)
        except ValueError as exc:
            raise self.error(str(exc)) from None


def _unknown_key_problem(key: str, allowed: Sequence[str]) -> str:
    problem = f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"{problem}; did you mean {close[0]!r}?" if close else problem
