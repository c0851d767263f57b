"""Walking a composed YAML node tree with the file position and document path at hand.

We compose with ``yaml.SafeLoader`` and never construct Python objects: every scalar stays
the text the author wrote, every mapping is checked for duplicate and unknown keys, and every
error carries ``file:line:column`` and the path (``rules[2].require.clearance``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml

from certgate.policy.errors import PolicyError
from certgate.policy.model import SourceLocation

T = TypeVar("T")

_NULL_TAG = "tag:yaml.org,2002:null"


MAX_POLICY_CHARS = 1 << 20
"""A policy of thousands of rules fits; parsing time and memory stay bounded."""
MAX_DEPTH = 32
"""A policy nests six levels; deeper documents are refused before Python's recursion limit."""


class _RefusedConstruct(Exception):
    def __init__(self, mark: yaml.Mark | None, problem: str) -> None:
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """A composer that refuses aliases (whose expansion is exponential: "billion laughs")
    and nesting deeper than ``MAX_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def _mark(self) -> yaml.Mark | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: yaml.Mark | None = getattr(event, "start_mark", None)
        return mark

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise _RefusedConstruct(
                self._mark(),
                "YAML aliases ('*name') are not supported; write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _RefusedConstruct(
                    self._mark(),
                    f"the document nests deeper than {MAX_DEPTH} levels")
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


_BRACKETS = re.compile(r"[\[\]{}]")


def _check_flow_depth(text: str, source_name: str) -> None:
    """Refuse deep ``[``/``{`` nesting before PyYAML scans it.

    PyYAML's scanner keeps a possible simple key per open flow level and walks all of them
    for every token, so scanning n nested brackets costs n squared, before the composer
    could refuse the depth. Brackets inside quoted strings count too: a policy has no use
    for dozens of them.
    """
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                before = text[: match.start()]
                line = before.count("\n") + 1
                column = match.start() - (before.rfind("\n") + 1) + 1
                raise PolicyError(source_name, line, column, "",
                                  f"the document nests deeper than {MAX_DEPTH} levels")
        elif depth:
            depth -= 1


#: libyaml's parser when PyYAML was built with it: six times faster on a 1,000-rule policy
#: (0.16 s instead of 1 s), same node tree. Errors are reported by the pure-Python parser,
#: whose messages the tests and people know.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _plain_tree(root: yaml.Node | None) -> bool:
    """True when no node is reached twice (an alias) and nothing nests deeper than
    ``MAX_DEPTH``: then the fast parser's tree is what the bounded loader would give."""
    if root is None:
        return True
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or depth > MAX_DEPTH:
            return False
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))
    return True


def compose_document(text: str, source_name: str) -> yaml.Node | None:
    """The node tree of a single YAML document; syntax errors become ``PolicyError``."""
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(source_name, 1, 1, "",
                          f"the policy is too large ({len(text)} characters; at most "
                          f"{MAX_POLICY_CHARS})")
    _check_flow_depth(text, source_name)
    if _FAST_LOADER is not None:
        try:
            fast: yaml.Node | None = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass  # parsed again below, for the pure-Python parser's message
        else:
            if _plain_tree(fast):
                return fast
            # an alias or deep nesting: the bounded loader below refuses it with its place
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses unprintable characters here
        return loader.get_single_node()
    except _RefusedConstruct as exc:
        line, column = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        raise PolicyError(source_name, line, column, "", exc.problem) from None
    except RecursionError:
        raise PolicyError(source_name, 1, 1, "", "the document nests too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "syntax error"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise PolicyError(source_name, line, column, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(source_name, 1, 1, "", f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def decode_policy(data: bytes, source_name: str) -> str:
    """The text of a policy file; a file that is not UTF-8 is a located ``PolicyError``."""
    if len(data) > MAX_POLICY_CHARS * 4:
        raise PolicyError(source_name, 1, 1, "", f"the policy is too large ({len(data)} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise PolicyError(source_name, line, column, "",
                          f"the policy is not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


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
