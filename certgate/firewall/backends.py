"""The packet filters certgate can load security groups into, behind one small interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from certgate.errors import CertgateError
from certgate.firewall.nft_host import ApplyOutcome, NftHost
from certgate.secgroups.diff import ruleset_diff
from certgate.secgroups.model import Fleet
from certgate.secgroups.nftables import NftRuleset, render_nftables

BACKENDS = ("nftables", "iptables")


class Backend(Protocol):
    name: str

    def render(self, fleet: Fleet) -> tuple[str, str]:
        """The ruleset text and its SHA-256."""
        ...

    def diff(self, text: str) -> list[str]:
        """Unified diff from what is loaded to ``text``."""
        ...

    def apply(self, text: str, sha256: str, *, full: bool) -> ApplyOutcome:
        ...

    def unload(self) -> bool:
        """Remove everything certgate loaded (True if there was something)."""
        ...


class NftablesBackend:
    name = "nftables"

    def __init__(self, cache_dir: Path | None, command_prefix: Sequence[str] = ()) -> None:
        self.host = NftHost(cache_dir, command_prefix=command_prefix)

    def render(self, fleet: Fleet) -> tuple[str, str]:
        ruleset = render_nftables(fleet)
        return ruleset.body, ruleset.sha256

    def diff(self, text: str) -> list[str]:
        return ruleset_diff(self.host.loaded_table(), text)

    def apply(self, text: str, sha256: str, *, full: bool) -> ApplyOutcome:
        return self.host.apply(NftRuleset(text, sha256), full=full)

    def unload(self) -> bool:
        return self.host.remove()


def backend_for(name: str, cache_dir: Path | None,
                command_prefix: Sequence[str] = ()) -> Backend:
    if name == "nftables":
        return NftablesBackend(cache_dir, command_prefix)
    if name == "iptables":
        from certgate.firewall.iptables_host import IptablesBackend

        return IptablesBackend(command_prefix)
    raise CertgateError(f"unknown backend {name!r} (expected {' or '.join(BACKENDS)})")
