"""Comparing a loaded table (``nft list table`` output) with the one certgate would load.

Both sides are reduced to one canonical form: blocks sorted by name, set and map elements on
one line and sorted (``nft`` wraps and orders them its own way), rules in order. The state
set and the table comment are left out: they say when, not what.
"""

from __future__ import annotations

import difflib

from certgate.secgroups.nftables import STATE_SET


def canonical_blocks(text: str) -> dict[str, list[str]]:
    """Blocks of a table listing: ``{"chain NAME": [rule, ...], "set NAME": [...]}``."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    depth = 0
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            pending = f"{pending} {line}"
            if not line.endswith("}"):
                continue
            line, pending = pending, ""
        elif line.startswith("elements = {") and not line.endswith("}"):
            pending = line
            continue
        if not line:
            continue
        if line.endswith("{") and not line.startswith("elements"):
            depth += 1
            if depth == 2:
                current = blocks.setdefault(line.removesuffix("{").strip(), [])
            continue
        if line == "}":
            depth -= 1
            if depth < 2:
                current = None
            continue
        if current is not None:
            current.append(_sorted_elements(line) if line.startswith("elements = {") else line)
    blocks.pop(f"set {STATE_SET}", None)
    return blocks


def _sorted_elements(line: str) -> str:
    inner = line.removeprefix("elements = {").removesuffix("}")
    elements = sorted(" ".join(e.split()) for e in inner.split(",") if e.strip())
    return "elements = { " + ", ".join(elements) + " }"


def canonical_text(text: str) -> list[str]:
    lines: list[str] = []
    for name, body in sorted(canonical_blocks(text).items()):
        lines.append(f"{name} {{")
        lines.extend(f"\t{line}" for line in body)
        lines.append("}")
    return lines


def ruleset_diff(loaded: str | None, wanted: str) -> list[str]:
    """Unified diff lines from what is loaded (None: nothing) to what would be loaded."""
    before = canonical_text(loaded) if loaded else []
    return list(difflib.unified_diff(before, canonical_text(wanted), "loaded", "certgate",
                                     lineterm="", n=2))
